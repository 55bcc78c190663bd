//! Builds the eBPF object (`tcperr-ebpf`) with the pinned nightly and bpf-linker, so that
//! `cargo build` on the stable toolchain builds the whole tool. `./dev` installs both.

/// The nightly that compiles the eBPF crate; bpf-linker must read its LLVM's bitcode.
const EBPF_TOOLCHAIN: &str = "nightly-2026-10-29";

fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tcperr-ebpf");
    let root = root.canonicalize()?;
    let root = root.to_str().ok_or_else(|| anyhow::anyhow!("non-UTF-8 path"))?;
    aya_build::build_ebpf(
        [aya_build::Package { name: "tcperr-ebpf", root_dir: root, ..Default::default() }],
        aya_build::Toolchain::Custom(EBPF_TOOLCHAIN),
    )
}
