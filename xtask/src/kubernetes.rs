//! `cargo xtask kubernetes`: checks the manifests of `deploy/kubernetes/` offline with
//! `scripts/check-kubernetes.py` (Kubernetes schemas of every supported version,
//! leakscope's own prometheus-operator schemas, the PrometheusRule generated from
//! `deploy/prometheus/rules.yml`, the DaemonSet's security promises). Its Python
//! packages (kubernetes-validate, which brings jsonschema and PyYAML) go into a virtual
//! environment under `target/`, made once: a few seconds, about 30 MB from PyPI.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::util::{find_program, run, target_dir, workspace_root};

/// The validator's version, pinned: its schemas are the Kubernetes versions checked.
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";

/// `--write`: regenerate `deploy/kubernetes/prometheusrule.yaml` from the rules first.
pub fn kubernetes(write: bool) -> Result<()> {
    let python = virtual_env()?;
    let mut check = Command::new(python);
    check.arg(workspace_root().join("scripts/check-kubernetes.py"));
    if write {
        check.arg("--write");
    }
    run(&mut check).context("the Kubernetes manifests (deploy/kubernetes) do not check out")
}

/// The virtual environment's python, with the validator installed.
fn virtual_env() -> Result<PathBuf> {
    let dir = target_dir().join("kubernetes-venv");
    let python = dir.join("bin/python");
    let stamp = dir.join(".installed");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(KUBERNETES_VALIDATE) {
        return Ok(python);
    }
    let _ = std::fs::remove_dir_all(&dir);
    make_virtual_env(&dir)?;
    run(Command::new(&python).args(["-m", "pip", "install", "--quiet", KUBERNETES_VALIDATE]))
        .context("installing kubernetes-validate from PyPI")?;
    std::fs::write(&stamp, KUBERNETES_VALIDATE)
        .with_context(|| format!("writing {}", stamp.display()))?;
    Ok(python)
}

/// `python3 -m venv DIR`; Debian's own python3 needs its python3-venv package for it.
fn make_virtual_env(dir: &Path) -> Result<()> {
    let python3 = find_program("python3").context("python3 is not installed")?;
    let made = Command::new(&python3)
        .args(["-m", "venv"])
        .arg(dir)
        .status();
    if made.is_ok_and(|status| status.success()) {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(dir);
    println!("kubernetes: installing python3-venv");
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "--no-install-recommends", "python3-venv"]))?;
    run(Command::new("/usr/bin/python3")
        .args(["-m", "venv"])
        .arg(dir))
}
