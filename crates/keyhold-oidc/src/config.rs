//! Where the provider is and who we are to it, from configuration.

use std::path::PathBuf;

use openidconnect::IssuerUrl;

use crate::{OidcError, Vtr};

#[derive(Clone, Debug)]
pub struct OidcConfig {
    pub issuer: IssuerUrl,
    pub client_id: String,
    /// PKCS#8 PEM RSA key that signs the client assertion.
    pub client_key: PathBuf,
    /// Where the provider sends the browser back: `…/auth/nhs/callback`.
    pub redirect_url: url::Url,
    pub vtr: Vtr,
}

impl OidcConfig {
    pub fn new(
        issuer: &str,
        client_id: &str,
        client_key: PathBuf,
        redirect_url: &str,
        vtr: Option<&str>,
    ) -> Result<Self, OidcError> {
        let issuer = IssuerUrl::new(issuer.trim_end_matches('/').to_string())
            .map_err(|e| OidcError::Config(format!("issuer {issuer:?}: {e}")))?;
        let redirect_url = url::Url::parse(redirect_url)
            .map_err(|e| OidcError::Config(format!("redirect URL {redirect_url:?}: {e}")))?;
        if client_id.trim().is_empty() {
            return Err(OidcError::Config("the client id is empty".into()));
        }
        let vtr = match vtr {
            Some(v) => Vtr::parse_json(v).map_err(OidcError::Config)?,
            None => Vtr::nhs_default(),
        };
        Ok(OidcConfig {
            issuer,
            client_id: client_id.trim().to_string(),
            client_key,
            redirect_url,
            vtr,
        })
    }
}
