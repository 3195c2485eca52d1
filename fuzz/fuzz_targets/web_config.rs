//! The daemon's web configuration (`--web-config-file`): the YAML, the certificate chain,
//! key and client CA it names (PEM), the bcrypt hashes of its users, each file up to and
//! past the 1 MiB leakscope reads. Whatever they hold, loading ends with a
//! configuration or a typed error, in bounded time.
//!
//! Input (after [`grow`]): the configuration, `cert.pem`, `key.pem`, `ca.pem`, separated
//! by `\n#####\n`; the files are written to a scratch directory the configuration's
//! relative paths resolve in.
#![no_main]

use std::{fs, path::PathBuf, sync::LazyLock};

use leakscope_fuzz::{grow, split_parts};
use libfuzzer_sys::fuzz_target;
use tracer_user::daemon::web::{MAX_BCRYPT_COST, WebSecurity};

/// Each file up to one byte past what the reader accepts (1 MiB).
const MAX_FILE: usize = (1 << 20) + 1;

static DIR: LazyLock<PathBuf> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("leakscope-fuzz-web-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("scratch directory");
    dir
});

/// bcrypt costs from 7 up to the highest accepted take 10 ms to a second per hash by
/// design: inputs naming one are left out so the fuzzer spends its time elsewhere (costs
/// 4-6, and costs past the limit, which must be refused without hashing, stay in).
fn slow_bcrypt_cost(config: &[u8]) -> bool {
    config.windows(7).any(|w| {
        w[0] == b'$'
            && w[1] == b'2'
            && w[3] == b'$'
            && w[6] == b'$'
            && std::str::from_utf8(&w[4..6])
                .ok()
                .and_then(|c| c.parse::<u32>().ok())
                .is_some_and(|cost| (7..=MAX_BCRYPT_COST).contains(&cost))
    })
}

fuzz_target!(|data: &[u8]| {
    let data = grow(data, 4 * MAX_FILE);
    let parts = split_parts(&data, b"\n#####\n", 4);
    if slow_bcrypt_cost(parts[0]) {
        return;
    }
    for (name, bytes) in ["web.yml", "cert.pem", "key.pem", "ca.pem"]
        .iter()
        .zip(&parts)
    {
        fs::write(DIR.join(name), &bytes[..bytes.len().min(MAX_FILE)]).expect("scratch file");
    }
    let _ = WebSecurity::load(&DIR.join("web.yml"));
});
