//! The route table. Every route is listed here, with its layers.

mod access;
mod access_requests;
mod account;
mod auth;
mod care_network;
mod documents;
mod export;
pub(crate) mod fhir;
mod invitations;
mod medicines;
mod multipart;
mod nhs_login;
mod orgs;
mod password;
mod people;
mod questionnaires;
mod record;
mod records_team;
mod sharing;
mod system;
mod terms;
mod two_factor;
mod worklists;

use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};

use crate::route_table::Routes;
use crate::{csrf, error, headers, metrics, AppState};

/// Forms are small; only the upload route accepts more.
const FORM_LIMIT: usize = 64 * 1024;

/// Where uploads are posted: a record's documents (under either mount), an
/// access request's documents, messages and disclosure.
const UPLOADS: [&str; 3] = ["/documents", "/messages", "/disclosure"];

/// The request timeout: from the headers to the response, body included. An
/// upload (up to the upload limit, perhaps over a slow mobile link) gets
/// the longer upload timeout; everything else the request timeout.
async fn deadline(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let limits = state.config.limits;
    let upload = req.method() == axum::http::Method::POST
        && UPLOADS.iter().any(|u| req.uri().path().ends_with(u));
    let allowed = if upload {
        limits.upload_timeout
    } else {
        limits.request_timeout
    };
    match tokio::time::timeout(allowed, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => axum::http::StatusCode::REQUEST_TIMEOUT.into_response(),
    }
}

/// The pages of one record. Mounted twice: at `/record` for the signed-in
/// person's own, and at `/people/{patient}/record` for anyone else's (the
/// `Subject` extractor tells which); the domain decides every request.
fn record_routes(upload_cap: usize, state: &AppState) -> Routes {
    // Sharing asks the holder to confirm it is them if they have not given
    // their password or a code for a while.
    let sharing = Routes::new()
        .route("/sharing", get(sharing::list).post(sharing::create))
        .route("/sharing/new", get(sharing::new_page))
        .route(
            "/sharing/{grant}",
            get(sharing::change_page_get).post(sharing::change),
        )
        .route("/sharing/{grant}/stop", post(sharing::stop))
        .map(|r| {
            r.route_layer(middleware::from_fn_with_state(
                state.clone(),
                two_factor::require_recent_confirmation,
            ))
        });
    Routes::new()
        .merge(sharing)
        .route("/", get(record::overview))
        .route("/demographics", get(record::demographics))
        .route("/medicines", get(medicines::page))
        .route(
            "/care-network",
            get(care_network::show).post(care_network::add),
        )
        .route("/entries/new", get(record::new_entry_page))
        .route("/entries", post(record::create_entry))
        .route("/entries/{id}", get(record::entry))
        .route(
            UPLOADS[0],
            get(documents::list)
                .post(documents::upload)
                .layer(DefaultBodyLimit::max(upload_cap)),
        )
        .route("/documents.zip", get(documents::zip_all))
        .route("/export", get(export::export_page).post(export::export))
        .route("/documents/{id}", get(documents::download))
        .route("/access", get(access::log))
        .route(
            "/questionnaires",
            get(questionnaires::list).post(questionnaires::assign),
        )
        .route(
            "/questionnaires/{id}",
            get(questionnaires::show).post(questionnaires::complete),
        )
}

/// Every route the server answers, before the layers that wrap them all.
pub(crate) fn table(state: &AppState) -> Routes {
    let upload_cap = multipart::upload_body_cap(state.core.settings().max_upload_bytes);
    Routes::new()
        .route("/", get(system::home))
        .route("/signup", get(auth::signup_page).post(auth::signup))
        .route("/signin", get(auth::signin_page).post(auth::signin))
        .route("/signout", post(auth::signout))
        .route("/auth/nhs/start", get(nhs_login::start))
        .route("/auth/nhs/callback", get(nhs_login::callback))
        .route("/account", get(account::show))
        .route("/account/confirm", post(password::resend))
        .route(
            "/signin/code",
            get(two_factor::code_page).post(two_factor::code),
        )
        .route(
            "/account/confirm-it-is-you",
            get(two_factor::confirm_page).post(two_factor::confirm),
        )
        .merge(
            Routes::new()
                .route(
                    "/account/two-factor",
                    get(two_factor::show).post(two_factor::enable),
                )
                .route("/account/two-factor/off", post(two_factor::disable))
                .map(|r| {
                    r.route_layer(middleware::from_fn_with_state(
                        state.clone(),
                        two_factor::require_recent_confirmation,
                    ))
                }),
        )
        .route(
            "/account/confirm/{token}",
            get(password::confirm_page).post(password::confirm),
        )
        .route(
            "/account/password",
            get(password::change_page).post(password::change),
        )
        .route(
            "/account/signout-everywhere",
            post(password::sign_out_everywhere),
        )
        .route(
            "/password/forgot",
            get(password::forgot_page).post(password::forgot),
        )
        .route(
            "/password/reset/{token}",
            get(password::reset_page).post(password::reset),
        )
        .nest("/record", record_routes(upload_cap, state))
        .nest(
            "/people/{patient}/record",
            record_routes(upload_cap, state)
                .map(|r| r.layer(middleware::map_response(error::not_shared))),
        )
        .route("/people", get(people::list))
        .route(
            "/invitations/{token}",
            get(invitations::show).post(invitations::accept),
        )
        .merge(orgs::routes())
        .merge(worklists::routes())
        .merge(access_requests::routes(upload_cap))
        .merge(records_team::routes(upload_cap))
        .nest("/fhir/R4", fhir::routes())
        .route("/healthz", get(system::healthz))
        .route("/metrics", get(metrics::serve))
        .route("/assets/{file}", get(system::asset))
}

pub fn router(state: AppState) -> axum::Router {
    table(&state)
        .into_router()
        .fallback(system::not_found)
        // Innermost of the stack, so a 408 still gets its page and headers.
        .layer(middleware::from_fn_with_state(state.clone(), deadline))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            error::render_error_pages,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            csrf::ensure_secret,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            headers::security_headers,
        ))
        .layer(DefaultBodyLimit::max(FORM_LIMIT))
        // Outermost: the time and status the client saw, under the route
        // template (axum's `MatchedPath`, set before any of these layers run).
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}
