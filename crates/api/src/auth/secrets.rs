//! Everything that makes or checks a secret: access tokens (JWT), refresh tokens, API keys,
//! one-time codes and password hashes.

use argon2::{
    Argon2,
    password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use pinglayer_domain::{SessionId, TenantId, UserId};
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Refresh tokens and API keys carry a recognisable prefix, so that leaked ones can be found by
/// secret scanners and so that the server knows which kind it was handed.
pub const REFRESH_PREFIX: &str = "plr_";
pub const API_KEY_PREFIX: &str = "pl_live_";
/// How many characters of an API key are kept in clear, to tell keys apart in lists.
pub const API_KEY_SHOWN: usize = 12;

#[derive(Debug, Serialize, Deserialize)]
pub struct AccessClaims {
    pub sub: Uuid,
    pub tid: Uuid,
    pub sid: Uuid,
    /// Always `"access"`: a token of any other kind is refused where an access token is needed.
    pub typ: String,
    pub iat: i64,
    pub exp: i64,
}

impl AccessClaims {
    pub fn user(&self) -> UserId {
        UserId(self.sub)
    }
    pub fn tenant(&self) -> TenantId {
        TenantId(self.tid)
    }
    pub fn session(&self) -> SessionId {
        SessionId(self.sid)
    }
}

#[derive(Clone)]
pub struct Secrets {
    enc: EncodingKey,
    dec: DecodingKey,
    validation: Validation,
    hmac_key: Vec<u8>,
}

impl Secrets {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            enc: EncodingKey::from_secret(secret),
            dec: DecodingKey::from_secret(secret),
            validation,
            // A separate key derived from the same secret, so that code hashes are not JWT MACs.
            hmac_key: Sha256::digest([b"pinglayer-otp:".as_slice(), secret].concat()).to_vec(),
        }
    }

    pub fn issue_access(&self, claims: &AccessClaims) -> anyhow::Result<String> {
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &self.enc,
        )?)
    }

    /// Verifies signature, expiry and kind. Any failure is just "not a valid access token".
    pub fn verify_access(&self, token: &str) -> Option<AccessClaims> {
        let data = jsonwebtoken::decode::<AccessClaims>(token, &self.dec, &self.validation).ok()?;
        (data.claims.typ == "access").then_some(data.claims)
    }

    /// Keyed hash of a one-time code, bound to the member it was issued for.
    pub fn otp_hash(&self, user: UserId, code: &str) -> String {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.hmac_key).expect("any key length");
        mac.update(user.0.as_bytes());
        mac.update(code.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

pub fn new_refresh_token() -> String {
    format!("{REFRESH_PREFIX}{}", random_b64(32))
}

/// A new API key (256 bits of entropy) and the part of it kept in clear.
pub fn new_api_key() -> (String, String) {
    let key = format!("{API_KEY_PREFIX}{}", random_b64(32));
    let shown = key[..API_KEY_SHOWN].to_string();
    (key, shown)
}

pub fn new_otp_code() -> String {
    format!("{:06}", rand::rng().random_range(0..1_000_000u32))
}

/// Lookup hash for high-entropy tokens (refresh tokens, API keys). A fast hash is right here:
/// the inputs are random, so there is nothing to brute-force, and it runs on every request.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Argon2id, off the async threads (it takes tens of milliseconds by design).
pub async fn hash_password(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
    })
    .await?
}

/// Checks a password against a stored hash. With no hash (unknown e-mail, or a member without a
/// password) it still runs one verification against a fixed hash, so the answer takes as long
/// either way and does not reveal which e-mails exist.
pub async fn verify_password(password: String, stored: Option<String>) -> anyhow::Result<bool> {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    tokio::task::spawn_blocking(move || {
        let real = stored.is_some();
        let hash = stored.unwrap_or_else(|| {
            DUMMY
                .get_or_init(|| {
                    Argon2::default()
                        .hash_password(b"pinglayer-dummy-password")
                        .expect("hashing a constant")
                        .to_string()
                })
                .clone()
        });
        let parsed = PasswordHash::new(&hash).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
            && real)
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_tokens_round_trip_and_refuse_other_kinds() {
        let s = Secrets::new(b"0123456789abcdef0123456789abcdef");
        let now = chrono::Utc::now().timestamp();
        let mut c = AccessClaims {
            sub: Uuid::now_v7(),
            tid: Uuid::now_v7(),
            sid: Uuid::now_v7(),
            typ: "access".into(),
            iat: now,
            exp: now + 60,
        };
        let t = s.issue_access(&c).unwrap();
        assert_eq!(s.verify_access(&t).unwrap().sub, c.sub);
        c.typ = "refresh".into();
        assert!(s.verify_access(&s.issue_access(&c).unwrap()).is_none());
        assert!(
            Secrets::new(b"another-secret-another-secret!!!")
                .verify_access(&t)
                .is_none()
        );
        c.typ = "access".into();
        c.exp = now - 3600;
        assert!(s.verify_access(&s.issue_access(&c).unwrap()).is_none());
    }

    #[test]
    fn generated_secrets_have_their_shape() {
        let (k, shown) = new_api_key();
        assert!(k.starts_with(API_KEY_PREFIX) && k.len() > 50 && k.starts_with(&shown));
        assert_ne!(new_api_key().0, k);
        assert!(new_refresh_token().starts_with(REFRESH_PREFIX));
        let code = new_otp_code();
        assert!(code.len() == 6 && code.chars().all(|c| c.is_ascii_digit()));
    }

    #[tokio::test]
    async fn passwords_verify_only_against_their_hash() {
        let h = hash_password("correct horse battery".into()).await.unwrap();
        assert!(!h.contains("horse"));
        assert!(
            verify_password("correct horse battery".into(), Some(h.clone()))
                .await
                .unwrap()
        );
        assert!(
            !verify_password("wrong horse battery".into(), Some(h))
                .await
                .unwrap()
        );
        assert!(
            !verify_password("correct horse battery".into(), None)
                .await
                .unwrap()
        );
    }
}
