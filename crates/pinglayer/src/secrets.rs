//! Secrets the operator did not set: generated once into `<data-dir>/secrets/` in development,
//! a start-up error in production.

use anyhow::{Context, bail};
use base64::{Engine, engine::general_purpose::STANDARD};
use rand::RngCore;
use std::{fs, path::Path};

use crate::config::Env;

/// Returns `given` if set; otherwise the secret stored under `name` in the data directory,
/// generating `len` random bytes on first use (development only).
pub fn load_or_generate(
    given: Option<&str>,
    data_dir: &Path,
    name: &str,
    len: usize,
    env: Env,
    flag: &str,
) -> anyhow::Result<Vec<u8>> {
    if let Some(v) = given {
        return Ok(v.as_bytes().to_vec());
    }
    if env == Env::Production {
        bail!(
            "{flag} is required in production (set it or its PINGLAYER_* variable); refusing to start with a generated secret"
        );
    }
    let dir = data_dir.join("secrets");
    let path = dir.join(name);
    if path.exists() {
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        return Ok(text.trim().as_bytes().to_vec());
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut bytes = vec![0u8; len];
    rand::rng().fill_bytes(&mut bytes);
    let text = STANDARD.encode(&bytes);
    write_private(&path, &text)?;
    tracing::info!(path = %path.display(), "generated a development secret");
    Ok(text.into_bytes())
}

/// Decodes the encryption key: base64 of exactly 32 bytes.
pub fn encryption_key(raw: &[u8]) -> anyhow::Result<[u8; 32]> {
    let bytes = STANDARD
        .decode(raw)
        .context("the encryption key must be base64 (of 32 bytes)")?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        anyhow::anyhow!("the encryption key must be 32 bytes, got {}", b.len())
    })
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::{io::Write, os::unix::fs::OpenOptionsExt};
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        f.write_all(text.as_bytes())?;
    }
    #[cfg(not(unix))]
    fs::write(path, text)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_reused_and_required_in_production() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_generate(
            None,
            dir.path(),
            "jwt.key",
            48,
            Env::Development,
            "--jwt-secret",
        )
        .unwrap();
        let b = load_or_generate(
            None,
            dir.path(),
            "jwt.key",
            48,
            Env::Development,
            "--jwt-secret",
        )
        .unwrap();
        assert_eq!(a, b);
        assert!(a.len() >= 64);
        let err = load_or_generate(
            None,
            dir.path(),
            "jwt.key",
            48,
            Env::Production,
            "--jwt-secret",
        )
        .unwrap_err();
        assert!(err.to_string().contains("required in production"));
        assert_eq!(
            load_or_generate(
                Some("given"),
                dir.path(),
                "jwt.key",
                48,
                Env::Production,
                "x"
            )
            .unwrap(),
            b"given"
        );
    }

    #[test]
    fn encryption_key_must_be_32_bytes() {
        assert!(encryption_key(STANDARD.encode([7u8; 32]).as_bytes()).is_ok());
        assert!(encryption_key(STANDARD.encode([7u8; 16]).as_bytes()).is_err());
        assert!(encryption_key(b"not base64!").is_err());
    }
}
