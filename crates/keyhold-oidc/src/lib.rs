//! NHS-login style OpenID Connect, the relying party side.
//!
//! `openidconnect` does discovery, the authorization URL (PKCE S256, state,
//! nonce) and the ID token checks (issuer, audience, expiry, signature against
//! the provider's JWKS, nonce). What it does not do, this crate adds:
//! client authentication by `private_key_jwt` signed RS512 (`client_key`),
//! the `vtr` request and the check of the `vot` answer (`vot`), RS512 as the
//! only ID token algorithm, NHS login's extra claims, and a state comparison
//! in constant time. The HTTP client follows no redirects.
//!
//! The crate knows nothing of accounts or records: it turns a callback into a
//! verified [`NhsIdentity`], and the caller (web → domain) decides what that
//! identity may see.

mod client_key;
mod config;
mod vot;

use std::sync::Arc;
use std::time::{Duration, Instant};

use keyhold_crypto::constant_time_eq;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthType, AuthorizationCode, ClaimsVerificationError, Client, ClientId,
    CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenFields,
    Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope,
    StandardErrorResponse, StandardTokenResponse, TokenResponse,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

pub use client_key::ClientKey;
pub use config::OidcConfig;
pub use vot::{ProofingLevel, Vector, Vtr};

/// NHS login's claims beyond the standard ones.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct NhsClaims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vot: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_proofing_level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nhs_number: Option<String>,
}
impl AdditionalClaims for NhsClaims {}

type NhsIdTokenFields = IdTokenFields<
    NhsClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type NhsTokenResponse = StandardTokenResponse<NhsIdTokenFields, CoreTokenType>;
type NhsClient = Client<
    NhsClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    NhsTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Why a sign-in with the provider did not complete. Each maps to a page
/// that tells the person what happened and what to do.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("NHS login is not set up here: {0}")]
    Config(String),
    #[error("NHS login could not be reached: {0}")]
    Unavailable(String),
    #[error("the sign-in reply did not match the sign-in we started (state)")]
    StateMismatch,
    #[error("NHS login refused the sign-in: {0}")]
    Provider(String),
    #[error("NHS login did not accept the sign-in code (used already, expired, or not ours): {0}")]
    CodeRefused(String),
    #[error("the identity token is for another sign-in (nonce)")]
    Nonce,
    #[error("the identity token's signature is not NHS login's")]
    Signature,
    #[error("the identity token has expired")]
    Expired,
    #[error("the identity token is not valid: {0}")]
    Token(String),
    #[error(
        "NHS login confirmed {got}, which is not among the levels this service asked for ({asked})"
    )]
    WeakerThanRequested { got: String, asked: String },
    #[error("{0}")]
    Internal(String),
}

/// What the browser carries between the start and the callback, kept by the
/// caller (single use, short lived). Not to be shown or logged.
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingLogin {
    state: String,
    nonce: String,
    pkce_verifier: String,
}

impl std::fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PendingLogin(<redacted>)")
    }
}

/// A person as NHS login vouched for them, after every check passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NhsIdentity {
    /// The provider's stable id for the person (`sub`).
    pub subject: String,
    pub level: ProofingLevel,
    pub vot: String,
    pub nhs_number: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    /// `YYYY-MM-DD` as sent; the caller parses it.
    pub birthdate: Option<String>,
    pub email: Option<String>,
    pub phone_number: Option<String>,
}

/// How long discovery (metadata and keys) is trusted before it is fetched again.
const METADATA_TTL: Duration = Duration::from_secs(3600);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The relying party: one per server, shared by every request.
pub struct RelyingParty {
    config: OidcConfig,
    key: ClientKey,
    http: reqwest::Client,
    discovered: Mutex<Option<(Instant, Arc<NhsClient>)>>,
}

impl std::fmt::Debug for RelyingParty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelyingParty")
            .field("issuer", &self.config.issuer)
            .field("client_id", &self.config.client_id)
            .finish()
    }
}

impl RelyingParty {
    /// Loads the client key now, so a bad key stops the server at start; the
    /// provider itself is contacted at the first sign-in.
    pub fn new(config: OidcConfig) -> Result<Self, OidcError> {
        let key = ClientKey::load(&config.client_key)?;
        let http = reqwest::Client::builder()
            // An authorization server must not be able to bounce our requests
            // elsewhere (SSRF); NHS login never redirects these calls.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|e| OidcError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(RelyingParty {
            config,
            key,
            http,
            discovered: Mutex::new(None),
        })
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    async fn client(&self) -> Result<Arc<NhsClient>, OidcError> {
        let mut cached = self.discovered.lock().await;
        if let Some((at, client)) = cached.as_ref() {
            if at.elapsed() < METADATA_TTL {
                return Ok(client.clone());
            }
        }
        let metadata = CoreProviderMetadata::discover_async(self.config.issuer.clone(), &self.http)
            .await
            .map_err(|e| OidcError::Unavailable(format!("discovery failed: {e}")))?;
        let redirect = RedirectUrl::new(self.config.redirect_url.to_string())
            .map_err(|e| OidcError::Config(format!("redirect URL: {e}")))?;
        let client = NhsClient::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            None,
        )
        .set_redirect_uri(redirect)
        // No secret: the client id goes in the body beside the assertion.
        .set_auth_type(AuthType::RequestBody);
        let client = Arc::new(client);
        *cached = Some((Instant::now(), client.clone()));
        Ok(client)
    }

    /// Starts a sign-in: the URL to send the browser to, and what to keep
    /// until the callback.
    pub async fn begin(&self) -> Result<(url::Url, PendingLogin), OidcError> {
        let client = self.client().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scopes(
                ["profile", "email", "phone"]
                    .iter()
                    .map(|s| Scope::new(s.to_string())),
            )
            .add_extra_param("vtr", self.config.vtr.to_json())
            .set_pkce_challenge(challenge)
            .url();
        Ok((
            url,
            PendingLogin {
                state: state.secret().clone(),
                nonce: nonce.secret().clone(),
                pkce_verifier: verifier.secret().clone(),
            },
        ))
    }

    /// Finishes a sign-in from the callback's `state` and `code`.
    pub async fn finish(
        &self,
        pending: PendingLogin,
        state: &str,
        code: &str,
        now_unix: i64,
    ) -> Result<NhsIdentity, OidcError> {
        if !constant_time_eq(pending.state.as_bytes(), state.as_bytes()) {
            return Err(OidcError::StateMismatch);
        }
        let client = self.client().await?;
        let token_url = client
            .token_uri()
            .ok_or_else(|| OidcError::Config("the provider names no token endpoint".into()))?
            .to_string();
        let assertion = self
            .key
            .assertion(&self.config.client_id, &token_url, now_unix)?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| OidcError::Config(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier))
            .add_extra_param(
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            )
            .add_extra_param("client_assertion", assertion)
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => OidcError::CodeRefused(format!(
                    "{}{}",
                    r.error(),
                    r.error_description()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                )),
                RequestTokenError::Request(e) => OidcError::Unavailable(e.to_string()),
                other => OidcError::Token(other.to_string()),
            })?;
        let id_token = response
            .id_token()
            .ok_or_else(|| OidcError::Token("the reply has no ID token".into()))?;
        let verifier = client
            .id_token_verifier()
            .set_allowed_algs([CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512]);
        let claims = id_token
            .claims(&verifier, &Nonce::new(pending.nonce))
            .map_err(|e| match e {
                ClaimsVerificationError::InvalidNonce(_) => OidcError::Nonce,
                ClaimsVerificationError::SignatureVerification(_) => OidcError::Signature,
                ClaimsVerificationError::Expired(_) => OidcError::Expired,
                other => OidcError::Token(other.to_string()),
            })?;
        let extra = claims.additional_claims();
        let vot_text = extra
            .vot
            .clone()
            .ok_or_else(|| OidcError::Token("the ID token has no vot claim".into()))?;
        let vot: Vector = vot_text.parse().map_err(OidcError::Token)?;
        if !self.config.vtr.accepts(&vot) {
            return Err(OidcError::WeakerThanRequested {
                got: vot_text,
                asked: self.config.vtr.to_json(),
            });
        }
        if let Some(ipl) = &extra.identity_proofing_level {
            if ipl.parse::<ProofingLevel>().ok() != Some(vot.level) {
                return Err(OidcError::Token(format!(
                    "identity_proofing_level {ipl} does not match vot {vot_text}"
                )));
            }
        }
        Ok(NhsIdentity {
            subject: claims.subject().to_string(),
            level: vot.level,
            vot: vot_text,
            nhs_number: extra.nhs_number.clone(),
            given_name: claims
                .given_name()
                .and_then(|n| n.get(None))
                .map(|n| n.to_string()),
            family_name: claims
                .family_name()
                .and_then(|n| n.get(None))
                .map(|n| n.to_string()),
            birthdate: claims.birthdate().map(|b| b.to_string()),
            email: claims.email().map(|e| e.to_string()),
            phone_number: claims.phone_number().map(|p| p.to_string()),
        })
    }
}
