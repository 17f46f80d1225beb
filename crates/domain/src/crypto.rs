//! Encryption of tenants' secrets at rest (WhatsApp access tokens, app secrets).
//!
//! AES-256-GCM with a fresh 96-bit nonce per value, and associated data naming the tenant and
//! the field, so a ciphertext copied into another row or column does not decrypt. Stored as
//! `version (1 byte) || nonce (12) || ciphertext+tag`; the version byte leaves room for key
//! rotation.

use aes_gcm::{
    Aes256Gcm, Nonce,
    aead::{Aead, Generate, KeyInit, Payload},
};

const VERSION: u8 = 1;

#[derive(Clone)]
pub struct Cipher(Aes256Gcm);

#[derive(Debug, thiserror::Error)]
#[error("cannot decrypt: wrong key, tampered value, or another row's value")]
pub struct DecryptError;

impl Cipher {
    pub fn new(key: &[u8; 32]) -> Self {
        Self(Aes256Gcm::new(key.into()))
    }

    pub fn encrypt(&self, aad: &str, plaintext: &str) -> Vec<u8> {
        let nonce = Nonce::generate();
        let ct = self
            .0
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .expect("AES-GCM encryption does not fail for in-memory buffers");
        let mut out = Vec::with_capacity(1 + nonce.len() + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    pub fn decrypt(&self, aad: &str, stored: &[u8]) -> Result<String, DecryptError> {
        if stored.len() < 1 + 12 + 16 || stored[0] != VERSION {
            return Err(DecryptError);
        }
        let nonce = Nonce::try_from(&stored[1..13]).map_err(|_| DecryptError)?;
        let pt = self
            .0
            .decrypt(
                &nonce,
                Payload {
                    msg: &stored[13..],
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| DecryptError)?;
        String::from_utf8(pt).map_err(|_| DecryptError)
    }
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(<key>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_binds_to_its_context() {
        let c = Cipher::new(&[7; 32]);
        let a = c.encrypt("tenant-1/access_token", "EAAG-secret");
        let b = c.encrypt("tenant-1/access_token", "EAAG-secret");
        assert_ne!(a, b, "fresh nonce each time");
        assert!(!String::from_utf8_lossy(&a).contains("EAAG"));
        assert_eq!(
            c.decrypt("tenant-1/access_token", &a).unwrap(),
            "EAAG-secret"
        );
        assert!(
            c.decrypt("tenant-2/access_token", &a).is_err(),
            "another tenant's row"
        );
        assert!(
            c.decrypt("tenant-1/app_secret", &a).is_err(),
            "another column"
        );
        assert!(
            Cipher::new(&[8; 32])
                .decrypt("tenant-1/access_token", &a)
                .is_err()
        );
        let mut tampered = a.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(c.decrypt("tenant-1/access_token", &tampered).is_err());
    }
}
