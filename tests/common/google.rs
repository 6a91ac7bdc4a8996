//! Local stand-ins for the Google endpoints rowcast's credentials talk to, which cannot be
//! reached from a test: the OAuth token endpoint, the metadata server's identity endpoint,
//! the IAM Credentials API, and the front end of a function deployed with
//! `--no-allow-unauthenticated`. Each checks what Google's own would check (signatures,
//! issuer, audience, expiry, the `Metadata-Flavor` header, the invoker's identity) and
//! refuses otherwise, so a test passes only when rowcast sends what Google would accept.
//!
//! All of them are one axum server on 127.0.0.1:0, on its own thread, stopped on drop.

#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::{json, Value};

/// The service account of the key file the tests write.
pub const KEY_ACCOUNT: &str = "rowcast-sync@acme-test.iam.gserviceaccount.com";
/// The service account the metadata server stand-in runs as.
pub const METADATA_ACCOUNT: &str = "runner@acme-test.iam.gserviceaccount.com";
/// The service account impersonation acts as.
pub const TARGET_ACCOUNT: &str = "invoker@acme-test.iam.gserviceaccount.com";

/// An RSA key pair made for one test run, in the forms each side needs.
pub struct TestKey {
    pub private_pem: String,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
}

impl TestKey {
    pub fn generate() -> TestKey {
        let mut rng = rsa::rand_core::OsRng;
        let private = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("an RSA key");
        let private_pem = private.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        let public_pem = private.to_public_key().to_public_key_pem(LineEnding::LF).unwrap();
        TestKey {
            encoding: EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap(),
            decoding: DecodingKey::from_rsa_pem(public_pem.as_bytes()).unwrap(),
            private_pem,
        }
    }
}

/// What the stand-ins saw and refused, for the tests to assert on.
#[derive(Default)]
pub struct Seen {
    /// ID tokens minted from a key file assertion (`target_audience`).
    pub id_token_grants: AtomicUsize,
    /// Access tokens minted from a key file assertion (`scope`), for impersonation.
    pub access_token_grants: AtomicUsize,
    /// Token requests refused, with why.
    pub refused_grants: Mutex<Vec<String>>,
    /// Token requests being answered now, and the most at once.
    pub grants_in_flight: AtomicUsize,
    pub max_grants_in_flight: AtomicUsize,
    /// Audiences asked of the metadata server.
    pub metadata_audiences: Mutex<Vec<String>>,
    /// `generateIdToken` calls answered.
    pub impersonations: AtomicUsize,
    /// Invocations the function front let through, and each refusal with its status.
    pub invocations: AtomicUsize,
    pub refusals: Mutex<Vec<(u16, String)>>,
    /// Every `Authorization` header value that reached any stand-in.
    pub tokens_seen: Mutex<BTreeSet<String>>,
}

/// How the stand-ins behave; the tests change it between runs.
pub struct Settings {
    /// Lifetime of the ID tokens minted.
    pub id_token_lifetime: Duration,
    /// How long a token request takes to answer, so that concurrent refreshes would pile up.
    pub grant_delay: Duration,
    /// Service accounts the function grants the invoker role to.
    pub invokers: BTreeSet<String>,
}

struct Shared {
    base: String,
    /// The service account key the key file holds (its public half verifies assertions).
    account_key: TestKey,
    /// Google's signing key for ID tokens (its public half is what the front end trusts).
    google_key: TestKey,
    settings: Mutex<Settings>,
    /// Access tokens issued, with their expiry (seconds since the epoch).
    access_tokens: Mutex<HashMap<String, u64>>,
    seen: Arc<Seen>,
}

/// The running stand-ins.
pub struct GoogleStandIn {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// `127.0.0.1:PORT`, for `GCE_METADATA_HOST`.
    pub host: String,
    pub seen: Arc<Seen>,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

impl GoogleStandIn {
    pub fn start() -> GoogleStandIn {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        let base = format!("http://{address}");
        let seen = Arc::new(Seen::default());
        let shared = Arc::new(Shared {
            base: base.clone(),
            account_key: TestKey::generate(),
            google_key: TestKey::generate(),
            settings: Mutex::new(Settings {
                id_token_lifetime: Duration::from_secs(3600),
                grant_delay: Duration::ZERO,
                invokers: [KEY_ACCOUNT, METADATA_ACCOUNT, TARGET_ACCOUNT]
                    .into_iter()
                    .map(String::from)
                    .collect(),
            }),
            access_tokens: Mutex::new(HashMap::new()),
            seen: seen.clone(),
        });
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = shared.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, router(state))
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        GoogleStandIn {
            host: address.to_string(),
            base,
            seen,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// The URL of the function behind the front end.
    pub fn function_url(&self) -> String {
        format!("{}/fn", self.base)
    }

    pub fn token_uri(&self) -> String {
        format!("{}/token", self.base)
    }

    /// A service account key file, as Google issues them, whose `token_uri` is the stand-in.
    pub fn key_file_json(&self) -> String {
        json!({
            "type": "service_account",
            "project_id": "acme-test",
            "private_key_id": "test-key-1",
            "private_key": self.shared.account_key.private_pem,
            "client_email": KEY_ACCOUNT,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri(),
        })
        .to_string()
    }

    pub fn settings(&self) -> std::sync::MutexGuard<'_, Settings> {
        self.shared.settings.lock().unwrap()
    }

    /// An ID token signed by the stand-in's Google key, as `gcloud auth
    /// print-identity-token` would print one.
    pub fn mint_id_token(&self, email: &str, audience: &str, expires_at: u64) -> String {
        self.shared.id_token(email, audience, expires_at)
    }

    pub fn refusals(&self) -> Vec<(u16, String)> {
        self.seen.refusals.lock().unwrap().clone()
    }
}

impl Drop for GoogleStandIn {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn router(state: Arc<Shared>) -> Router {
    Router::new()
        .route("/token", post(token))
        .route("/computeMetadata/v1/instance/service-accounts/default/identity", get(identity))
        .route("/computeMetadata/v1/instance/service-accounts/default/email", get(email))
        .route("/v1/projects/-/serviceAccounts/{call}", post(generate_id_token))
        .route("/fn", get(function).post(function))
        .with_state(state)
}

impl Shared {
    fn id_token(&self, email: &str, audience: &str, expires_at: u64) -> String {
        let claims = json!({
            "iss": "https://accounts.google.com",
            "aud": audience,
            "azp": email,
            "email": email,
            "email_verified": true,
            "sub": format!("sub-{email}"),
            "iat": now_secs(),
            "exp": expires_at,
        });
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("google-test".into());
        jsonwebtoken::encode(&header, &claims, &self.google_key.encoding).unwrap()
    }

    fn lifetime(&self) -> u64 {
        self.settings.lock().unwrap().id_token_lifetime.as_secs()
    }

    fn remember(&self, headers: &HeaderMap) {
        if let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
            self.seen.tokens_seen.lock().unwrap().insert(value.to_string());
        }
    }
}

/// Verifies an RS256 JWT's signature with `key` and returns its claims. Segments may be
/// padded (gcp_auth pads them) or not, as Google's endpoint accepts both.
pub fn verify_jwt(token: &str, key: &DecodingKey) -> Result<Value, String> {
    let engine = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts[..] else {
        return Err("not a JWT".into());
    };
    let header: Value = engine
        .decode(header)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or("the header is not base64url JSON")?;
    if header["alg"] != "RS256" {
        return Err(format!("alg {} is not RS256", header["alg"]));
    }
    let message = format!("{header}.{payload}", header = parts[0]);
    let signature = signature.trim_end_matches('=');
    let valid = jsonwebtoken::crypto::verify(signature, message.as_bytes(), key, Algorithm::RS256)
        .map_err(|e| format!("the signature cannot be checked: {e}"))?;
    if !valid {
        return Err("the signature does not match the key".into());
    }
    engine
        .decode(payload)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| "the claims are not base64url JSON".into())
}

/// Checks `exp` (in the future) and `iat` (not in the future, beyond a minute of skew).
fn check_times(claims: &Value) -> Result<(), String> {
    let now = now_secs();
    let exp = claims["exp"].as_u64().ok_or("no exp")?;
    if exp <= now {
        return Err(format!("expired at {exp}, now is {now}"));
    }
    if let Some(iat) = claims["iat"].as_u64() {
        if iat > now + 60 {
            return Err("issued in the future".into());
        }
        if exp > iat + 3600 {
            return Err("valid for more than an hour".into());
        }
    }
    Ok(())
}

struct InFlight<'a>(&'a Seen);

impl<'a> InFlight<'a> {
    fn enter(seen: &'a Seen) -> InFlight<'a> {
        let now = seen.grants_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        seen.max_grants_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(seen)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.grants_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn invalid_grant(state: &Shared, why: String) -> Response {
    state.seen.refused_grants.lock().unwrap().push(why.clone());
    let body = json!({"error": "invalid_grant", "error_description": why});
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// The OAuth token endpoint: a JWT-bearer grant signed by the service account's key, for
/// this endpoint, yields an `id_token` (with `target_audience`) or an `access_token`
/// (with `scope`).
async fn token(
    State(state): State<Arc<Shared>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let _guard = InFlight::enter(&state.seen);
    let delay = state.settings.lock().unwrap().grant_delay;
    tokio::time::sleep(delay).await;

    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return invalid_grant(&state, format!("grant_type {:?}", form.get("grant_type")));
    }
    let assertion = form.get("assertion").map(String::as_str).unwrap_or_default();
    let claims = match verify_jwt(assertion, &state.account_key.decoding) {
        Ok(claims) => claims,
        Err(why) => return invalid_grant(&state, why),
    };
    let checks = [
        (claims["iss"] == KEY_ACCOUNT, "iss is not the key's service account"),
        (claims["aud"] == format!("{}/token", state.base), "aud is not the token endpoint"),
    ];
    if let Some((_, why)) = checks.iter().find(|(ok, _)| !ok) {
        return invalid_grant(&state, why.to_string());
    }
    if let Err(why) = check_times(&claims) {
        return invalid_grant(&state, why);
    }

    if let Some(audience) = claims["target_audience"].as_str() {
        state.seen.id_token_grants.fetch_add(1, Ordering::SeqCst);
        let id_token = state.id_token(KEY_ACCOUNT, audience, now_secs() + state.lifetime());
        return Json(json!({"id_token": id_token})).into_response();
    }
    if claims["scope"].as_str().is_some_and(|s| !s.is_empty()) {
        state.seen.access_token_grants.fetch_add(1, Ordering::SeqCst);
        let token = format!("ya29.test-{}", uuid::Uuid::new_v4());
        state.access_tokens.lock().unwrap().insert(token.clone(), now_secs() + 3600);
        let body = json!({"access_token": token, "expires_in": 3600, "token_type": "Bearer"});
        return Json(body).into_response();
    }
    invalid_grant(&state, "neither target_audience nor scope".into())
}

/// The metadata server's identity endpoint: only with `Metadata-Flavor: Google`, as the
/// real one, and only for a non-empty audience.
async fn identity(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if headers.get("metadata-flavor").map(|v| v.as_bytes()) != Some(b"Google") {
        return (StatusCode::FORBIDDEN, "Missing Metadata-Flavor:Google header.").into_response();
    }
    let Some(audience) = query.get("audience").filter(|a| !a.is_empty()) else {
        return (StatusCode::BAD_REQUEST, "non-empty audience parameter required").into_response();
    };
    state.seen.metadata_audiences.lock().unwrap().push(audience.clone());
    state.id_token(METADATA_ACCOUNT, audience, now_secs() + state.lifetime()).into_response()
}

async fn email(headers: HeaderMap) -> Response {
    if headers.get("metadata-flavor").map(|v| v.as_bytes()) != Some(b"Google") {
        return (StatusCode::FORBIDDEN, "Missing Metadata-Flavor:Google header.").into_response();
    }
    METADATA_ACCOUNT.into_response()
}

/// IAM Credentials `generateIdToken`: the caller's access token must be one the token
/// endpoint issued and not expired; the answer is an ID token of the target account.
async fn generate_id_token(
    State(state): State<Arc<Shared>>,
    Path(call): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    state.remember(&headers);
    let Some(target) = call.strip_suffix(":generateIdToken") else {
        return (StatusCode::NOT_FOUND, "unknown method").into_response();
    };
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let issued = bearer.and_then(|t| state.access_tokens.lock().unwrap().get(t).copied());
    if issued.is_none_or(|exp| exp <= now_secs()) {
        let body = json!({"error": {"code": 401, "status": "UNAUTHENTICATED"}});
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    if target != TARGET_ACCOUNT {
        let body = json!({"error": {"code": 403, "status": "PERMISSION_DENIED"}});
        return (StatusCode::FORBIDDEN, Json(body)).into_response();
    }
    let Some(audience) = body["audience"].as_str().filter(|a| !a.is_empty()) else {
        return (StatusCode::BAD_REQUEST, "audience is required").into_response();
    };
    state.seen.impersonations.fetch_add(1, Ordering::SeqCst);
    let token = state.id_token(TARGET_ACCOUNT, audience, now_secs() + state.lifetime());
    Json(json!({"token": token})).into_response()
}

/// The function's front end: a Google-signed ID token whose audience is the function and
/// that has not expired, else 401; a principal without the invoker role, 403. What passes
/// is acknowledged, as an empty 200.
async fn function(State(state): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    state.remember(&headers);
    let refuse = |status: StatusCode, why: String| {
        state.seen.refusals.lock().unwrap().push((status.as_u16(), why));
        let page = "<html><body>Your client does not have permission</body></html>";
        (status, page).into_response()
    };
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = bearer else {
        return refuse(StatusCode::UNAUTHORIZED, "no bearer token".into());
    };
    let claims = match verify_jwt(token, &state.google_key.decoding) {
        Ok(claims) => claims,
        Err(why) => return refuse(StatusCode::UNAUTHORIZED, why),
    };
    if claims["aud"] != format!("{}/fn", state.base) {
        return refuse(StatusCode::UNAUTHORIZED, format!("audience {}", claims["aud"]));
    }
    if let Err(why) = check_times(&claims) {
        return refuse(StatusCode::UNAUTHORIZED, why);
    }
    let email = claims["email"].as_str().unwrap_or_default().to_string();
    if !state.settings.lock().unwrap().invokers.contains(&email) {
        return refuse(StatusCode::FORBIDDEN, format!("{email} is not an invoker"));
    }
    state.seen.invocations.fetch_add(1, Ordering::SeqCst);
    StatusCode::OK.into_response()
}
