//! API tokens: made, listed, revoked, and checked for each request.
//!
//! A token reads `ec2s_<id>_<secret>`. The store keeps the id, the role and the
//! SHA-256 of the secret; the secret itself is shown once, when the token is made.
//! Checking compares hashes in constant time.

use chrono::{DateTime, Utc};
use ec2_scheduler_core::access::{Caller, Role, Token, TokenInfo};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::env::App;
use crate::error::{Error, Result};

/// The prefix of every token.
const PREFIX: &str = "ec2s_";

/// Why a request's credentials were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no credentials: send Authorization: Bearer TOKEN")]
    Missing,
    #[error("the token is not valid (unknown, wrong, revoked or expired)")]
    Invalid,
}

/// A token just made: its record, and the token itself (shown once).
#[derive(Debug, Clone, serde::Serialize)]
pub struct NewToken {
    #[serde(flatten)]
    pub record: TokenInfo,
    /// The bearer token. It cannot be shown again.
    pub token: String,
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)
        .map_err(|e| Error::Invalid(format!("no randomness from the system: {e}")))?;
    Ok(hex(&buf))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// The id and secret of a presented token.
fn parts(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let ok = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (ok(id, 12) && ok(secret, 64)).then_some((id, secret))
}

impl App {
    /// Makes a token for `name` with `role`, valid until `expires` (or until revoked).
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty or overlong name or an expiry in the past; the
    /// store's errors.
    pub async fn create_token(
        &self,
        name: &str,
        role: Role,
        expires: Option<DateTime<Utc>>,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<NewToken> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
            return Err(Error::Invalid(
                "--name: expected 1 to 128 printable characters".into(),
            ));
        }
        if expires.is_some_and(|e| e <= now) {
            return Err(Error::Invalid(
                "--expires: the instant is not in the future".into(),
            ));
        }
        let (id, secret) = (random_hex(6)?, random_hex(32)?);
        let record = Token {
            id: id.clone(),
            name: name.to_string(),
            role,
            hash: hash(&secret),
            created_at: now,
            created_by: by.to_string(),
            expires,
            revoked_at: None,
        };
        self.store.put_token(&record).await?;
        Ok(NewToken {
            record: TokenInfo::from(&record),
            token: format!("{PREFIX}{id}_{secret}"),
        })
    }

    /// Every token (never their secrets nor the hashes of them), oldest first.
    ///
    /// # Errors
    /// The store's.
    pub async fn tokens(&self) -> Result<Vec<TokenInfo>> {
        Ok(self
            .store
            .tokens()
            .await?
            .iter()
            .map(TokenInfo::from)
            .collect())
    }

    /// Revokes a token: it is refused from now on, and kept in the list.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown id; the store's errors.
    pub async fn revoke_token(&self, id: &str, now: DateTime<Utc>) -> Result<TokenInfo> {
        let Some(mut t) = self.store.token(id).await? else {
            return Err(Error::NotFound(format!("no token has the id {id:?}")));
        };
        if t.revoked_at.is_none() {
            t.revoked_at = Some(now);
            self.store.put_token(&t).await?;
        }
        Ok(TokenInfo::from(&t))
    }

    /// Whom `bearer` (the value after `Bearer `) acts for.
    ///
    /// # Errors
    /// [`Refused`] when the token is malformed, unknown, wrong, revoked or expired;
    /// the store's errors as `Err(Ok(..))`.
    pub async fn authenticate(
        &self,
        bearer: Option<&str>,
        now: DateTime<Utc>,
    ) -> std::result::Result<Caller, std::result::Result<Error, Refused>> {
        let bearer = bearer.map(str::trim).filter(|b| !b.is_empty());
        let Some(token) = bearer else {
            return Err(Err(Refused::Missing));
        };
        let Some((id, secret)) = parts(token) else {
            return Err(Err(Refused::Invalid));
        };
        let stored = self.store.token(id).await.map_err(|e| Ok(Error::from(e)))?;
        let presented = hash(secret);
        // The same work whether or not the id is known.
        let expected = stored
            .as_ref()
            .map_or_else(|| "0".repeat(64), |t| t.hash.clone());
        let same: bool = presented.as_bytes().ct_eq(expected.as_bytes()).into();
        match stored {
            Some(t) if same && t.usable_at(now) => Ok(Caller {
                name: format!("token:{}", t.name),
                role: t.role,
            }),
            _ => Err(Err(Refused::Invalid)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_tokens_are_split() {
        let id = "0123456789ab";
        let secret = "f".repeat(64);
        let token = format!("ec2s_{id}_{secret}");
        assert_eq!(parts(&token), Some((id, secret.as_str())));
        assert_eq!(parts(&token[1..]), None);
        assert_eq!(parts(&format!("ec2s_{id}_{}", "f".repeat(63))), None);
        assert_eq!(parts(&format!("ec2s_{id}_{}g", "f".repeat(63))), None);
        assert_eq!(parts("ec2s__"), None);
        // The hash of a known value.
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
