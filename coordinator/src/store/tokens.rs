//! Tokens: only their hashes are stored. A name is created once; `--rotate` gives it a new
//! secret (and brings a revoked one back, deliberately), never a new kind.

use super::{Doing, Store, StoreError};
use serde::Serialize;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, strum::Display, strum::EnumString)]
#[strum(serialize_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// Runs cells: the agent service only; the token's name is the agent's.
    Agent,
    /// Every admin command, the dashboard and `/metrics`.
    Admin,
    /// Reads the dashboard and `/metrics`; no gRPC call at all.
    Viewer,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub name: String,
    pub kind: TokenKind,
    pub created_at: String,
    pub revoked: bool,
}

/// The kind column as stored (NULL only in a file migrated half-way: the admin flag says).
fn kind_of(kind: Option<String>, admin: bool) -> TokenKind {
    kind.and_then(|k| k.parse().ok()).unwrap_or(if admin {
        TokenKind::Admin
    } else {
        TokenKind::Agent
    })
}

const INSERT: &str = "INSERT INTO tokens (name, token_hash, admin, created_at, revoked_at, kind)
    VALUES (?, ?, ?, current_timestamp::TIMESTAMP, NULL, ?)";

/// What a token request asked for that cannot be done; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefused {
    #[error(
        "a token named `{0}` exists: pass --rotate to give it a new secret (its old one stops working), or pick another name"
    )]
    Exists(String),
    #[error("no token named `{0}` to rotate")]
    NoSuchToken(String),
    #[error(
        "token `{name}` is a {kind} token: rotating keeps its kind (revoke it and create another name for the other kind)"
    )]
    KindChange { name: String, kind: TokenKind },
    #[error("no live token named `{0}`")]
    NotLive(String),
}

/// What a create did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCreated {
    New,
    /// An existing name got a new secret.
    Rotated,
}

impl Store {
    /// Creates token `name` with `token_hash`, or with `rotate` replaces the secret of an
    /// existing one of the same kind.
    pub fn create_token(
        &mut self,
        name: &str,
        token_hash: &str,
        kind: TokenKind,
        rotate: bool,
    ) -> Result<Result<TokenCreated, TokenRefused>, StoreError> {
        let existing: Option<TokenKind> = {
            let mut stmt = self
                .conn
                .prepare("SELECT kind, admin FROM tokens WHERE name = ?")
                .doing("preparing a token lookup")?;
            let mut rows = stmt.query([name]).doing("looking up a token")?;
            match rows.next().doing("looking up a token")? {
                Some(r) => Some(kind_of(
                    r.get(0).doing("reading a token")?,
                    r.get(1).doing("reading a token")?,
                )),
                None => None,
            }
        };
        match (existing, rotate) {
            (None, false) => {
                self.conn
                    .execute(
                        INSERT,
                        duckdb::params![
                            name,
                            token_hash,
                            kind == TokenKind::Admin,
                            kind.to_string()
                        ],
                    )
                    .doing("storing a token")?;
                Ok(Ok(TokenCreated::New))
            }
            (None, true) => Ok(Err(TokenRefused::NoSuchToken(name.into()))),
            (Some(_), false) => Ok(Err(TokenRefused::Exists(name.into()))),
            (Some(was), true) if was != kind => Ok(Err(TokenRefused::KindChange {
                name: name.into(),
                kind: was,
            })),
            (Some(_), true) => {
                self.conn
                    .execute(
                        "UPDATE tokens SET token_hash = ?, created_at = current_timestamp::TIMESTAMP, revoked_at = NULL WHERE name = ?",
                        duckdb::params![token_hash, name],
                    )
                    .doing("rotating a token")?;
                Ok(Ok(TokenCreated::Rotated))
            }
        }
    }

    /// Stores many new tokens in one transaction (lab provisioning, benchmarks); a name in use
    /// fails the whole batch.
    pub fn put_tokens(&mut self, tokens: &[(String, String, bool)]) -> Result<(), StoreError> {
        let tx = self.conn.transaction().doing("starting a token batch")?;
        {
            let mut stmt = tx.prepare(INSERT).doing("preparing a token insert")?;
            for (name, hash, admin) in tokens {
                let kind = if *admin {
                    TokenKind::Admin
                } else {
                    TokenKind::Agent
                };
                stmt.execute(duckdb::params![name, hash, admin, kind.to_string()])
                    .doing("storing a token")?;
            }
        }
        tx.commit().doing("committing tokens")
    }

    /// Revokes the live token `name`.
    pub fn revoke_token(&mut self, name: &str) -> Result<Result<(), TokenRefused>, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE tokens SET revoked_at = current_timestamp::TIMESTAMP WHERE name = ? AND revoked_at IS NULL",
                [name],
            )
            .doing("revoking a token")?;
        Ok(if n > 0 {
            Ok(())
        } else {
            Err(TokenRefused::NotLive(name.into()))
        })
    }

    pub fn tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, kind, admin, strftime(created_at, '%Y-%m-%d %H:%M:%S'), revoked_at IS NOT NULL FROM tokens ORDER BY name")
            .doing("preparing the tokens query")?;
        stmt.query_map([], |r| {
            Ok(TokenInfo {
                name: r.get(0)?,
                kind: kind_of(r.get(1)?, r.get(2)?),
                created_at: r.get(3)?,
                revoked: r.get(4)?,
            })
        })
        .doing("reading tokens")?
        .collect::<Result<_, _>>()
        .doing("reading tokens")
    }

    /// `(name, token_hash, kind)` of every live token.
    pub fn live_token_hashes(&self) -> Result<Vec<(String, String, TokenKind)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, token_hash, kind, admin FROM tokens WHERE revoked_at IS NULL")
            .doing("preparing the token hash query")?;
        stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, kind_of(r.get(2)?, r.get(3)?)))
        })
        .doing("reading token hashes")?
        .collect::<Result<_, _>>()
        .doing("reading token hashes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_created_once_and_rotated_only_on_purpose() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(&dir.path().join("t.duckdb")).expect("store");
        assert_eq!(
            store
                .create_token("lab-1", "h1", TokenKind::Agent, false)
                .expect("db"),
            Ok(TokenCreated::New)
        );
        assert_eq!(
            store
                .create_token("lab-1", "h2", TokenKind::Admin, false)
                .expect("db"),
            Err(TokenRefused::Exists("lab-1".into())),
            "an agent token never turns admin by being created again"
        );
        store.revoke_token("lab-1").expect("db").expect("live");
        assert_eq!(
            store
                .create_token("lab-1", "h3", TokenKind::Agent, false)
                .expect("db"),
            Err(TokenRefused::Exists("lab-1".into())),
            "a revoked token does not come back by being created again"
        );
        assert!(store.live_token_hashes().expect("db").is_empty());
        assert!(matches!(
            store
                .create_token("lab-1", "h4", TokenKind::Viewer, true)
                .expect("db"),
            Err(TokenRefused::KindChange { .. })
        ));
        assert_eq!(
            store
                .create_token("lab-1", "h5", TokenKind::Agent, true)
                .expect("db"),
            Ok(TokenCreated::Rotated)
        );
        assert_eq!(
            store.live_token_hashes().expect("db"),
            vec![("lab-1".to_string(), "h5".to_string(), TokenKind::Agent)]
        );
        assert_eq!(
            store
                .create_token("nobody", "h6", TokenKind::Agent, true)
                .expect("db"),
            Err(TokenRefused::NoSuchToken("nobody".into()))
        );
        assert_eq!(
            store.revoke_token("nobody").expect("db"),
            Err(TokenRefused::NotLive("nobody".into()))
        );
    }
}
