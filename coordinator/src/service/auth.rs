//! Tokens: generation, hashing (only hashes are stored), and the interceptors that turn a
//! bearer token into an identity or refuse the call.

use super::error::ServiceError;
pub use crate::store::TokenKind;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use tonic::{Request, Status};

/// Who a verified token belongs to; inserted into the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub kind: TokenKind,
}

/// A new random token, shown once to whoever creates it.
pub fn generate_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!(
        "qgt_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

/// A token name: letters, digits, `-`, `_` or `.` (it is the agent's id, shown everywhere).
pub fn check_token_name(name: &str) -> Result<(), ServiceError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(ServiceError::InvalidArgument(format!(
            "token name `{name}` must be letters, digits, `-`, `_` or `.`"
        )));
    }
    Ok(())
}

pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Live token hashes: loaded when the coordinator starts, changed by the token RPCs once the
/// store has the change, read by every call.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    by_hash: Arc<RwLock<HashMap<String, Identity>>>,
}

impl Tokens {
    pub fn new(live: Vec<(String, String, TokenKind)>) -> Tokens {
        Tokens {
            by_hash: Arc::new(RwLock::new(
                live.into_iter()
                    .map(|(name, hash, kind)| (hash, Identity { name, kind }))
                    .collect(),
            )),
        }
    }

    /// `name`'s secret is now `hash` (a new token, or a rotation: the old secret stops
    /// working).
    pub fn set(&self, name: &str, hash: String, kind: TokenKind) {
        let mut map = self.by_hash.write().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, id| id.name != name);
        map.insert(
            hash,
            Identity {
                name: name.to_string(),
                kind,
            },
        );
    }

    /// `name`'s token stops working.
    pub fn revoke(&self, name: &str) {
        self.by_hash
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, id| id.name != name);
    }

    fn verify(&self, metadata: &tonic::metadata::MetadataMap) -> Result<Identity, ServiceError> {
        let header = metadata
            .get("authorization")
            .ok_or_else(|| {
                ServiceError::Unauthenticated(
                    "missing bearer token: pass --token or set QUANTGRID_TOKEN".into(),
                )
            })?
            .to_str()
            .map_err(|_| {
                ServiceError::Unauthenticated("authorization header is not text".into())
            })?;
        let token = header.strip_prefix("Bearer ").ok_or_else(|| {
            ServiceError::Unauthenticated("authorization header must be `Bearer <token>`".into())
        })?;
        self.by_hash
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&hash_token(token.trim()))
            .cloned()
            .ok_or_else(|| ServiceError::Unauthenticated("unknown or revoked token".into()))
    }

    /// A reader from HTTP headers (the same bearer token as gRPC): an admin or a viewer.
    pub fn reader(&self, headers: &axum::http::HeaderMap) -> Result<Identity, ServiceError> {
        let mut metadata = tonic::metadata::MetadataMap::new();
        if let Some(v) = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
        {
            metadata.insert("authorization", v);
        }
        let id = self.verify(&metadata)?;
        if id.kind == TokenKind::Agent {
            return Err(ServiceError::PermissionDenied(format!(
                "token `{}` is an agent token; the dashboard and /metrics need an admin or viewer token",
                id.name
            )));
        }
        Ok(id)
    }

    /// Interceptor for the agent service: agent tokens only.
    pub fn agent_interceptor(
        &self,
    ) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone + use<> {
        let tokens = self.clone();
        move |mut req: Request<()>| {
            let id = tokens.verify(req.metadata()).map_err(Status::from)?;
            if id.kind != TokenKind::Agent {
                return Err(ServiceError::PermissionDenied(format!(
                    "token `{}` is a{} {} token; agents need an agent token (quantgrid token create NAME)",
                    id.name,
                    if id.kind == TokenKind::Admin { "n" } else { "" },
                    id.kind
                ))
                .into());
            }
            req.extensions_mut().insert(id);
            Ok(req)
        }
    }

    /// Interceptor for the admin service: the admin token only.
    pub fn admin_interceptor(
        &self,
    ) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone + use<> {
        let tokens = self.clone();
        move |mut req: Request<()>| {
            let id = tokens.verify(req.metadata()).map_err(Status::from)?;
            if id.kind != TokenKind::Admin {
                return Err(ServiceError::PermissionDenied(format!(
                    "token `{}` is {} {} token; admin calls need an admin token (quantgrid token create NAME --admin)",
                    id.name,
                    if id.kind == TokenKind::Agent { "an" } else { "a" },
                    id.kind
                ))
                .into());
            }
            req.extensions_mut().insert(id);
            Ok(req)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(token: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(t) = token {
            r.metadata_mut().insert(
                "authorization",
                format!("Bearer {t}").parse().expect("header"),
            );
        }
        r
    }

    #[test]
    fn tokens_map_to_identities_and_kinds_are_kept_apart() {
        let agent = generate_token().expect("random");
        let admin = generate_token().expect("random");
        assert_ne!(agent, admin);
        let tokens = Tokens::new(vec![
            ("lab-1".into(), hash_token(&agent), TokenKind::Agent),
            ("ops".into(), hash_token(&admin), TokenKind::Admin),
        ]);
        let a = tokens.agent_interceptor();
        let ok = a(req(Some(&agent))).expect("agent token");
        assert_eq!(
            ok.extensions().get::<Identity>().map(|i| i.name.as_str()),
            Some("lab-1")
        );
        assert_eq!(
            a(req(None)).expect_err("none").code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            a(req(Some("qgt_bogus"))).expect_err("bogus").code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            a(req(Some(&admin))).expect_err("admin").code(),
            tonic::Code::PermissionDenied
        );
        let m = tokens.admin_interceptor();
        assert!(m(req(Some(&admin))).is_ok());
        let denied = m(req(Some(&agent))).expect_err("agent on admin");
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(denied.message().contains("agent token"));
    }
}
