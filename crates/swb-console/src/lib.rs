//! The web console: HTML, CSS and JavaScript compiled into the binary and served at
//! `/console/` by `swb up` and `swb server`, over the server's own REST operations.
//!
//! A browser signs in with a token (a plain form post: no script ever holds it); the
//! server keeps the token in a session of its memory and gives the browser an
//! HttpOnly, SameSite=Strict cookie naming the session. The pages call
//! `/console/api/v1/…`, which is `/v1/…` itself, run for the session's token: the
//! same handlers, the same authorization, the same audit log. Live pages (jobs,
//! workers) follow `/console/watch`, server-sent events of a listing read once a
//! second for that page. `/v1` stays
//! bearer-only: it never reads the cookie. Every request that may change something
//! carries the session's CSRF token and an Origin of this server; pages allow no
//! script but their own (Content-Security-Policy).

mod session;

use axum::Router;
use axum::body::Body;
use axum::extract::{Form, Path, Request, State};
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, COOKIE, HOST, LOCATION,
    ORIGIN, REFERRER_POLICY, SET_COOKIE, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde::Deserialize;
use serde_json::json;
use session::{Session, Sessions};
use std::sync::Arc;
use tower::ServiceExt;

/// The cookie naming a session.
const COOKIE_NAME: &str = "swb_session";
/// The header a page sends its session's CSRF token in.
const CSRF_HEADER: &str = "x-csrf-token";
/// What a console page may load and run: its own files, nothing inline.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

struct Console {
    sessions: Sessions,
    /// The server's REST API, which the console's pages call through their session.
    api: Router,
}

impl Console {
    /// Runs a request on the REST API.
    async fn call(&self, request: Request) -> Response {
        match self.api.clone().oneshot(request).await {
            Ok(answer) => answer,
            Err(never) => match never {},
        }
    }

    /// `GET uri` on the REST API with this `Authorization`.
    async fn read(&self, uri: Uri, authorization: &HeaderValue) -> Response {
        let mut request = Request::new(Body::empty());
        *request.uri_mut() = uri;
        request
            .headers_mut()
            .insert(AUTHORIZATION, authorization.clone());
        self.call(request).await
    }
}

/// The console's routes in front of the REST API `api`: `/` leads to the console,
/// everything the console does not serve goes to `api` unchanged.
pub fn mount(api: Router) -> Router {
    let console = Arc::new(Console {
        sessions: Sessions::default(),
        api: api.clone(),
    });
    Router::new()
        .route("/", get(|| async { see_other("/console/") }))
        .route("/console", get(|| async { see_other("/console/") }))
        .route("/console/", get(|| async { asset("index.html") }))
        .route(
            "/console/assets/{file}",
            get(|Path(file): Path<String>| async move { asset(&file) }),
        )
        .route(
            "/console/session",
            get(whoami).post(sign_in).delete(sign_out),
        )
        .route("/console/api/{*rest}", any(proxy))
        .route("/console/watch", get(watch))
        .layer(axum::middleware::map_response(protect))
        .with_state(console)
        .fallback_service(api)
}

/// The security headers of every console answer.
async fn protect(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The console's files, compiled in.
fn asset(name: &str) -> Response {
    let (body, kind): (&'static str, &str) = match name {
        "index.html" => (
            include_str!("../assets/index.html"),
            "text/html; charset=utf-8",
        ),
        "app.js" => (
            include_str!("../assets/app.js"),
            "text/javascript; charset=utf-8",
        ),
        "form.js" => (
            include_str!("../assets/form.js"),
            "text/javascript; charset=utf-8",
        ),
        "style.css" => (
            include_str!("../assets/style.css"),
            "text/css; charset=utf-8",
        ),
        _ => return error(StatusCode::NOT_FOUND, "not_found", "no such file"),
    };
    let mut response = ([(CONTENT_TYPE, kind)], body).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn see_other(to: &'static str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, to)]).into_response()
}

/// An answer in the REST API's error shape.
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "error": { "code": code, "message": message, "details": {} } });
    (status, axum::Json(body)).into_response()
}

/// The answer to a request that needs a session and has none.
fn signed_out() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "sign in with a token",
    )
}

/// The session a request's cookie names, if it is alive.
fn session(console: &Console, headers: &HeaderMap) -> Option<Arc<Session>> {
    let id = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE_NAME)?.strip_prefix('='))?;
    console.sessions.get(id)
}

/// Whether a request comes from a page of this server: its Origin names the host it
/// was sent to. Browsers send Origin with every request that may change something.
fn same_origin(headers: &HeaderMap) -> bool {
    let (Some(origin), Some(host)) = (headers.get(ORIGIN), headers.get(HOST)) else {
        return false;
    };
    let (Ok(origin), Ok(host)) = (origin.to_str(), host.to_str()) else {
        return false;
    };
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        == Some(host)
}

/// `GET /console/session`: whether this browser is signed in, as whom, and the CSRF
/// token its pages send.
async fn whoami(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    match session(&console, &headers) {
        Some(s) => axum::Json(json!({ "signed_in": true, "email": s.email, "csrf": s.csrf })),
        None => axum::Json(json!({ "signed_in": false })),
    }
    .into_response()
}

#[derive(Deserialize)]
struct SignIn {
    token: String,
}

/// `POST /console/session` (a form with the field `token`): checks the token with
/// `GET /v1/me`, opens a session and sets its cookie.
async fn sign_in(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Form(form): Form<SignIn>,
) -> Response {
    if !same_origin(&headers) {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "sign in from this server's own page",
        );
    }
    // Marked sensitive: no log or debug output of the request shows it.
    let Ok(mut authorization) = HeaderValue::from_str(&format!("Bearer {}", form.token.trim()))
    else {
        return see_other("/console/?signin=refused");
    };
    authorization.set_sensitive(true);
    let answer = console
        .read(Uri::from_static("/v1/me"), &authorization)
        .await;
    if !answer.status().is_success() {
        return see_other("/console/?signin=refused");
    }
    let Ok(body) = axum::body::to_bytes(answer.into_body(), 1 << 20).await else {
        return error(
            StatusCode::BAD_GATEWAY,
            "internal",
            "the server's answer was unreadable",
        );
    };
    let email = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|me| me["user"]["email"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let id = console.sessions.open(authorization, email);
    let cookie = format!(
        "{COOKIE_NAME}={id}; HttpOnly; SameSite=Strict; Path=/console; Max-Age={}",
        session::IDLE.as_secs()
    );
    let mut response = see_other("/console/");
    response.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("a cookie of hex digits"),
    );
    response
}

/// `DELETE /console/session`: signs out (the session is forgotten, the cookie
/// cleared).
async fn sign_out(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let Some(s) = session(&console, &headers) else {
        return error(StatusCode::UNAUTHORIZED, "unauthenticated", "not signed in");
    };
    if !may_change(&s, &headers) {
        return refused_change();
    }
    console.sessions.close(&s);
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_static(
            "swb_session=; HttpOnly; SameSite=Strict; Path=/console; Max-Age=0",
        ),
    );
    response
}

/// Whether a request that may change something may: it comes from this server's
/// pages (Origin) and carries the session's CSRF token.
fn may_change(s: &Session, headers: &HeaderMap) -> bool {
    let token = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    same_origin(headers) && token.is_some_and(|t| s.csrf_matches(t))
}

fn refused_change() -> Response {
    error(
        StatusCode::FORBIDDEN,
        "forbidden",
        "a change needs this server's page and its CSRF token",
    )
}

#[derive(Deserialize)]
struct Watch {
    /// A listing to follow: `/v1/jobs…` or `/v1/workers`.
    path: String,
}

/// How often a watched listing is read again.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// `GET /console/watch?path=/v1/jobs…`: server-sent events carrying the listing
/// each time it changes (read once a second for this page, through the session:
/// one read per open page, whatever it shows). Ends with the session.
async fn watch(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    axum::extract::Query(watch): axum::extract::Query<Watch>,
) -> Response {
    let Some(s) = session(&console, &headers) else {
        return signed_out();
    };
    let live = ["/v1/jobs", "/v1/workers"];
    let Ok(uri) = watch.path.parse::<Uri>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "path is not a URI path",
        );
    };
    if uri.scheme().is_some() || !live.iter().any(|p| uri.path().starts_with(p)) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "only jobs and workers are watched",
        );
    }
    let first = (console, s, uri, None::<bytes::Bytes>, true);
    let updates =
        futures_util::stream::unfold(first, |(console, s, uri, last, first)| async move {
            if !first {
                tokio::time::sleep(WATCH_EVERY).await;
            }
            loop {
                if !console.sessions.alive(&s) {
                    return None;
                }
                let answer = console.read(uri.clone(), &s.authorization).await;
                let body = axum::body::to_bytes(answer.into_body(), 16 << 20)
                    .await
                    .unwrap_or_default();
                if last.as_ref() != Some(&body) {
                    let event =
                        axum::response::sse::Event::default().data(String::from_utf8_lossy(&body));
                    return Some((
                        Ok::<_, std::convert::Infallible>(event),
                        (console, s, uri, Some(body), false),
                    ));
                }
                tokio::time::sleep(WATCH_EVERY).await;
            }
        });
    axum::response::sse::Sse::new(updates)
        .keep_alive(axum::response::sse::KeepAlive::default())
        .into_response()
}

/// `/console/api/v1/…`: the REST operation `/v1/…`, run with the session's token.
async fn proxy(State(console): State<Arc<Console>>, request: Request) -> Response {
    let Some(s) = session(&console, request.headers()) else {
        return signed_out();
    };
    if !matches!(*request.method(), Method::GET | Method::HEAD)
        && !may_change(&s, request.headers())
    {
        return refused_change();
    }
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path().trim_start_matches("/console/api");
    if !path.starts_with("/v1/") {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "the console calls /v1 only",
        );
    }
    let uri = match parts.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    parts.uri = uri.parse::<Uri>().expect("a path of a valid URI");
    // Nothing of the console's own routing (its path parameters) goes along.
    parts.extensions = Default::default();
    parts.headers.remove(COOKIE);
    parts.headers.remove(CSRF_HEADER);
    parts.headers.insert(AUTHORIZATION, s.authorization.clone());
    console.call(Request::from_parts(parts, body)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in REST API: `/v1/me` knows one token; `/v1/echo` tells what reached it.
    fn api() -> Router {
        async fn me(headers: HeaderMap) -> Response {
            match headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
                Some("Bearer good") => {
                    axum::Json(json!({ "user": { "email": "a@example.com" } })).into_response()
                }
                _ => error(StatusCode::UNAUTHORIZED, "unauthenticated", "no"),
            }
        }
        async fn echo(headers: HeaderMap, uri: Uri) -> Response {
            let h = |n| {
                headers
                    .get(n)
                    .and_then(|v: &HeaderValue| v.to_str().ok().map(str::to_owned))
            };
            axum::Json(json!({ "authorization": h(AUTHORIZATION), "cookie": h(COOKIE), "uri": uri.to_string() }))
                .into_response()
        }
        Router::new()
            .route("/v1/me", get(me))
            .route("/v1/echo", get(echo).post(echo))
    }

    async fn send(router: &Router, request: Request) -> (StatusCode, HeaderMap, serde_json::Value) {
        let answer = router.clone().oneshot(request).await.unwrap();
        let (parts, body) = answer.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (parts.status, parts.headers, json)
    }

    fn request(method: Method, uri: &str, headers: &[(&str, &str)], body: &str) -> Request {
        let mut r = Request::builder()
            .method(method)
            .uri(uri)
            .header(HOST, "srv:1");
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.body(Body::from(body.to_owned())).unwrap()
    }

    async fn sign_in(router: &Router, token: &str, origin: &str) -> (StatusCode, HeaderMap) {
        let form = [
            ("content-type", "application/x-www-form-urlencoded"),
            ("origin", origin),
        ];
        let (status, headers, _) = send(
            router,
            request(
                Method::POST,
                "/console/session",
                &form,
                &format!("token={token}"),
            ),
        )
        .await;
        (status, headers)
    }

    #[tokio::test]
    async fn sessions_stand_in_for_tokens_and_changes_need_csrf_and_origin() {
        let router = mount(api());
        // Sign-in: only from this server's page, only with a token the API accepts.
        assert_eq!(
            sign_in(&router, "good", "http://evil:1").await.0,
            StatusCode::FORBIDDEN
        );
        let (status, headers) = sign_in(&router, "bad", "http://srv:1").await;
        assert_eq!(headers[LOCATION], "/console/?signin=refused");
        assert!(status.is_redirection() && headers.get(SET_COOKIE).is_none());
        let (_, headers) = sign_in(&router, "good", "http://srv:1").await;
        let set = headers[SET_COOKIE].to_str().unwrap();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        let cookie = set.split(';').next().unwrap().to_owned();
        let (_, _, me) = send(
            &router,
            request(Method::GET, "/console/session", &[("cookie", &cookie)], ""),
        )
        .await;
        assert_eq!(
            (me["signed_in"].as_bool(), me["email"].as_str()),
            (Some(true), Some("a@example.com"))
        );
        assert!(
            !me.to_string().contains("good"),
            "the token never goes back"
        );
        let csrf = me["csrf"].as_str().unwrap().to_owned();

        // Through the session, the API sees the token and not the cookie; a header
        // the page sends does not replace the session's token.
        let seen = |headers: &[(&str, &str)], method| {
            let (router, mut all) = (router.clone(), vec![("cookie", cookie.as_str())]);
            all.extend_from_slice(headers);
            let r = request(method, "/console/api/v1/echo?x=1", &all, "");
            async move { send(&router, r).await }
        };
        let (status, _, body) = seen(&[("authorization", "Bearer other")], Method::GET).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["authorization"], "Bearer good");
        assert_eq!(
            (body["cookie"].clone(), body["uri"].as_str()),
            (serde_json::Value::Null, Some("/v1/echo?x=1"))
        );
        // A change needs the CSRF token and the Origin.
        let origin = ("origin", "http://srv:1");
        let with_csrf = ("x-csrf-token", csrf.as_str());
        assert_eq!(seen(&[origin], Method::POST).await.0, StatusCode::FORBIDDEN);
        assert_eq!(
            seen(&[with_csrf], Method::POST).await.0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            seen(&[with_csrf, ("origin", "null")], Method::POST).await.0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            seen(&[("x-csrf-token", "guess"), origin], Method::POST)
                .await
                .0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            seen(&[with_csrf, origin], Method::POST).await.0,
            StatusCode::OK
        );
        // /v1 itself does not read the cookie; the console calls /v1 only.
        let (_, _, body) = send(
            &router,
            request(Method::GET, "/v1/echo", &[("cookie", &cookie)], ""),
        )
        .await;
        assert_eq!(body["authorization"], serde_json::Value::Null);
        let (status, _, _) = send(
            &router,
            request(Method::GET, "/console/api/v2/x", &[("cookie", &cookie)], ""),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // Console answers carry the security headers; the API's do not.
        let (_, headers, _) = send(&router, request(Method::GET, "/console/", &[], "")).await;
        assert!(
            headers[CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("script-src 'self'")
        );
        assert_eq!(headers[X_FRAME_OPTIONS], "DENY");
        let (_, headers, _) = send(&router, request(Method::GET, "/v1/echo", &[], "")).await;
        assert!(headers.get(CONTENT_SECURITY_POLICY).is_none());

        // Signing out needs the CSRF token too, and ends the session.
        let out = |headers: &[(&str, &str)]| {
            let (router, mut all) = (router.clone(), vec![("cookie", cookie.as_str())]);
            all.extend_from_slice(headers);
            let r = request(Method::DELETE, "/console/session", &all, "");
            async move { send(&router, r).await.0 }
        };
        assert_eq!(out(&[origin]).await, StatusCode::FORBIDDEN);
        assert_eq!(out(&[with_csrf, origin]).await, StatusCode::NO_CONTENT);
        let (status, _, _) = seen(&[], Method::GET).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}
