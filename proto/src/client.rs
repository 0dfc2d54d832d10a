//! Connecting to a coordinator: one channel (TLS when the URL is `https`) and a bearer-token
//! interceptor, shared by the agent and the admin commands.

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// CA that signed the coordinator's certificate (system roots are not used).
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate and key, for coordinators that require mutual TLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid coordinator url `{url}`")]
    Url {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("cannot connect to the coordinator at {url}")]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("the token is not valid header text")]
    Token,
}

fn endpoint(url: &str, tls: &Tls) -> Result<Endpoint, ConnectError> {
    let err = |source| ConnectError::Url {
        url: url.to_string(),
        source,
    };
    let mut ep = Endpoint::from_shared(url.to_string())
        .map_err(err)?
        .connect_timeout(std::time::Duration::from_secs(10))
        .http2_keep_alive_interval(std::time::Duration::from_secs(20))
        .keep_alive_while_idle(true);
    if url.starts_with("https://") {
        let mut cfg = ClientTlsConfig::new();
        if let Some(ca) = &tls.ca_pem {
            cfg = cfg.ca_certificate(Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = &tls.identity {
            cfg = cfg.identity(Identity::from_pem(cert, key));
        }
        ep = ep.tls_config(cfg).map_err(err)?;
    }
    Ok(ep)
}

/// Connects now, so a wrong address fails here with a clear error.
pub async fn connect(url: &str, tls: &Tls) -> Result<Channel, ConnectError> {
    endpoint(url, tls)?
        .connect()
        .await
        .map_err(|source| ConnectError::Connect {
            url: url.to_string(),
            source,
        })
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Debug, Clone)]
pub struct Bearer(MetadataValue<tonic::metadata::Ascii>);

impl Bearer {
    pub fn new(token: &str) -> Result<Bearer, ConnectError> {
        format!("Bearer {}", token.trim())
            .parse()
            .map(Bearer)
            .map_err(|_| ConnectError::Token)
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}
