//! A container image for runtimes that cannot pull one (no registry here).

use crate::must;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Makes a container image tarball under `dir`: busybox-static as `/bin/busybox`, `tools` as
/// symlinks to it, and `/tmp` (no registry here: runtimes import it, see ENVIRONMENT.md).
pub fn busybox_image_tar(dir: &Path, tools: &[&str]) -> PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .expect("copy /bin/busybox (install busybox-static)");
    for tool in tools {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(tool)).unwrap();
    }
    let tar = dir.join("rootfs.tar");
    must(
        Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg("."),
    );
    tar
}
