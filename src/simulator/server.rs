//! The simulator's HTTP side: a hand-written accept loop serving HTTP/1.1 (keep-alive) with
//! hyper, routing to the `/v2` handlers and the `/_sim` admin routes.
//!
//! Requests enter from a `TcpListener` the caller bound; each is logged and gated (auth, rate
//! limit, fault draw) under the state mutex before its body is read, handled against `state`,
//! delayed by the configured latency, then answered. The accept loop is ours rather than
//! `axum::serve` because a fault must be able to close a connection *without* any response:
//! each connection gets a kill switch that the handler pulls, and the connection future is then
//! dropped, closing the socket.
//!
//! Over 700 lines: one handler per endpoint of the vendor's API and of `/_sim`, each with the
//! vendor's quirks; splitting the handlers by endpoint into a `handlers/` folder is the next
//! step.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::demo::{self, OWNER_CHANGE_EVENT};
use super::state::{Admission, Fault, Filter, LeadRef, Record, State, parse_date};
use super::{
    BulkAnswer, OtherClient, OtherLoad, PagingMode, RateLimitStyle, RejectMode, RequestOutcome,
    RetrieveDates, SimConfig, SimError, Simulator, UpdateAnswer, rate_limit_message,
};
use crate::lsq::api::{self, MAX_BATCH};
use crate::lsq::quota::RateQuota;

/// Bodies above this are refused; 25 activities with generous notes fit many times over.
const MAX_BODY: usize = 8 * 1024 * 1024;
/// Get Activities' page size when the request names none.
const DEFAULT_ROW_COUNT: u64 = 25;
/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// How long shutdown waits for in-flight requests beyond the configured latency.
const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// How long the simulator waits for a status webhook to answer.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

const INVALID_INPUT: &str = "MXInvalidInputException";
const INVALID_ENTITY: &str = "MXInvalidEntityException";
const UNAUTHORIZED: &str = "MXUnAuthorizedAccessException";
const PLAIN_500_BODY: &str = "<html><head><title>500 Internal Server Error</title></head><body><h1>500 Internal Server Error</h1></body></html>";

/// Serves `sim` on `listener` until `shutdown` completes, then lets in-flight requests finish
/// (up to the configured latency plus a second) and closes every connection.
pub async fn serve(
    listener: TcpListener,
    sim: Simulator,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let background = sim
        .shared
        .config
        .other_client
        .map(|other| tokio::spawn(other_client(sim.clone(), other)));
    let mut connections = JoinSet::new();
    // A refused-connections outage closes the listener and every open connection (`cut`), and
    // binds the same address again when it ends.
    let addr = listener.local_addr()?;
    let mut listener = Some(listener);
    let cut_tx = watch::Sender::new(0u64);
    let mut outage_changes = sim.shared.outage_changed.subscribe();
    tokio::pin!(shutdown);
    loop {
        let refusal = sim.next_refusal();
        if let Some((start, end)) = refusal
            && start <= Instant::now()
        {
            if listener.take().is_some() {
                cut_tx.send_modify(|n| *n += 1);
                tracing::info!("simulator outage: connections refused");
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep_until(end.into()) => {}
                _ = outage_changes.changed() => {}
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
            continue;
        }
        if listener.is_none() {
            listener = Some(rebind(addr).await?);
            tracing::info!("simulator outage over: listening again");
        }
        let Some(open) = &listener else { continue };
        let refusal_starts = refusal.map(|(start, _)| start);
        tokio::select! {
            () = &mut shutdown => break,
            accepted = open.accept() => match accepted {
                Ok((stream, _peer)) => {
                    // Subscribed now, so an earlier outage's cut does not close it.
                    connections.spawn(connection(stream, sim.clone(), stop_rx.clone(), cut_tx.subscribe()));
                }
                Err(error) => {
                    tracing::warn!(%error, "simulator accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            () = sleep_until_opt(refusal_starts), if refusal_starts.is_some() => {}
            _ = outage_changes.changed() => {}
            // Reap finished connections so a long benchmark does not accumulate them.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    if let Some(task) = background {
        task.abort();
    }
    let _ = stop_tx.send(true);
    let config = &sim.shared.config;
    let grace = config.latency + config.jitter + DRAIN_GRACE;
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
    Ok(())
}

/// Binds `addr` again after a refused-connections outage; the old socket may take a moment to
/// be released.
async fn rebind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let mut tries = 0;
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(error) if tries < 100 => {
                tries += 1;
                tracing::debug!(%error, "simulator: cannot listen again yet");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
            Err(error) => return Err(error),
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// A simulator serving on a loopback port in the background, for tests and demos.
pub struct RunningSimulator {
    /// Where it listens (always loopback), for building client URLs.
    pub addr: SocketAddr,
    /// The account it serves, for inspecting requests and activities.
    pub sim: Simulator,
    /// Completing (or dropping) it stops the server.
    stop: oneshot::Sender<()>,
    /// The serving task, awaited on shutdown so the port is free afterwards.
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningSimulator {
    /// Binds 127.0.0.1 on a free port and starts serving a new simulator.
    pub async fn start(config: SimConfig) -> std::io::Result<RunningSimulator> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        Self::spawn(listener, config)
    }

    /// Binds 127.0.0.1:`port` (never another interface: the simulator has fixed keys) and
    /// starts serving a new simulator.
    pub async fn start_on(port: u16, config: SimConfig) -> Result<RunningSimulator, SimError> {
        Self::start_at(Ipv4Addr::LOCALHOST.into(), port, config).await
    }

    /// Binds `ip`:`port`, refusing any `ip` that is not loopback, and starts serving a new
    /// simulator.
    pub async fn start_at(
        ip: IpAddr,
        port: u16,
        config: SimConfig,
    ) -> Result<RunningSimulator, SimError> {
        if !ip.is_loopback() {
            return Err(SimError::NotLoopback(ip.to_string()));
        }
        let bind_error = |source| SimError::Bind { ip, port, source };
        let listener = TcpListener::bind((ip, port)).await.map_err(bind_error)?;
        Self::spawn(listener, config).map_err(bind_error)
    }

    fn spawn(listener: TcpListener, config: SimConfig) -> std::io::Result<RunningSimulator> {
        let addr = listener.local_addr()?;
        let sim = Simulator::new(config);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, sim.clone(), async move {
            // An error means the handle was dropped: stop then too.
            let _ = stopped.await;
        }));
        Ok(RunningSimulator {
            addr,
            sim,
            stop,
            task,
        })
    }

    /// `http://127.0.0.1:PORT`, to which the API paths are appended.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets in-flight requests finish, and waits for the server to end.
    pub async fn shutdown(self) {
        let RunningSimulator { stop, task, .. } = self;
        let _ = stop.send(());
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "simulator ended with an error"),
            Err(error) => tracing::warn!(%error, "simulator task failed"),
        }
    }
}

/// Serves one connection until the client closes it, a fault kills it, or the server stops.
async fn connection(
    stream: TcpStream,
    sim: Simulator,
    mut stop: watch::Receiver<bool>,
    mut cut: watch::Receiver<u64>,
) {
    // Responses are small and latency-sensitive; don't let Nagle hold them back.
    let _ = stream.set_nodelay(true);
    let kill = Arc::new(Notify::new());
    let service = {
        let kill = kill.clone();
        service_fn(move |request| handle(sim.clone(), request, kill.clone()))
    };
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "simulator connection ended with an error");
                }
                return;
            }
            // Returning drops `conn` and with it the socket: the client gets no response.
            () = kill.notified() => return,
            // A refused-connections outage began: every connection goes, as the host went down.
            _ = cut.changed() => return,
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The `/v2` endpoints, matched case-insensitively as the vendor's IIS host does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Bulk,
    /// The bulk post naming leads by a lead field (`searchBy`) instead of by id.
    BulkByField,
    /// Bulk Update of notes and custom fields, by `ProspectActivityId`.
    BulkUpdate,
    Retrieve,
    /// Get Activities by Activity Event: one custom code, every lead.
    RetrieveByEvent,
    DeleteActivities,
    DeleteOwnerHistory,
    ActivityTypes,
    UserByAccessKey,
}

impl Route {
    fn find(method: &Method, path: &str) -> Option<Route> {
        let routes = [
            (Method::POST, api::PATH_BULK_ADD_BY_LEAD_ID, Route::Bulk),
            (
                Method::POST,
                api::PATH_BULK_ADD_BY_LEAD_FIELD,
                Route::BulkByField,
            ),
            (Method::POST, api::PATH_BULK_UPDATE, Route::BulkUpdate),
            (Method::POST, api::PATH_RETRIEVE, Route::Retrieve),
            (
                Method::POST,
                api::PATH_RETRIEVE_BY_EVENT,
                Route::RetrieveByEvent,
            ),
            (
                Method::POST,
                api::PATH_DELETE_ACTIVITIES,
                Route::DeleteActivities,
            ),
            (
                Method::POST,
                api::PATH_DELETE_OWNER_HISTORY,
                Route::DeleteOwnerHistory,
            ),
            (Method::GET, api::PATH_ACTIVITY_TYPES, Route::ActivityTypes),
            (
                Method::GET,
                api::PATH_USER_BY_ACCESS_KEY,
                Route::UserByAccessKey,
            ),
        ];
        routes
            .into_iter()
            .find(|(m, p, _)| m == method && p.eq_ignore_ascii_case(path))
            .map(|(_, _, route)| route)
    }

    /// The bulk calls (both posts and the update) share the fault draw and the item count in
    /// the log.
    fn is_bulk(self) -> bool {
        matches!(self, Route::Bulk | Route::BulkByField | Route::BulkUpdate)
    }
}

/// The host UserByAccessKey.Get names: the configured one, or, when none is configured, the
/// simulator itself as the client reached it (so `lsq-sync check` against `lsq-sync simulate`
/// finds the host right, as it would against the account's real regional host).
fn account_host(sim: &Simulator, headers: &HeaderMap) -> String {
    let configured = &sim.shared.config.account_host;
    if !configured.is_empty() {
        return configured.clone();
    }
    let reached = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{reached}")
}

/// A handler's answer and what to log about it.
struct Answer {
    response: Response<Body>,
    outcome: RequestOutcome,
    items: usize,
    /// Close the connection instead of sending `response`.
    drop: bool,
    /// Held back this much beyond the configured latency (the commit-then-late fault).
    late_by: Duration,
}

impl Answer {
    fn new(response: Response<Body>, outcome: RequestOutcome) -> Answer {
        Answer {
            response,
            outcome,
            items: 0,
            drop: false,
            late_by: Duration::ZERO,
        }
    }

    fn ok<T: Serialize>(body: &T) -> Answer {
        Answer::new(json(StatusCode::OK, body), RequestOutcome::Ok)
    }

    /// An application error: HTTP 500 with an `MX...Exception` body.
    fn mx(exception_type: &str, message: impl Into<String>) -> Answer {
        let body = error_body(Some(exception_type), message);
        Answer::new(
            json(StatusCode::INTERNAL_SERVER_ERROR, &body),
            RequestOutcome::DataError,
        )
    }

    fn bad_request(message: impl Into<String>) -> Answer {
        let body = error_body(None, message);
        Answer::new(
            json(StatusCode::BAD_REQUEST, &body),
            RequestOutcome::BadRequest,
        )
    }

    fn not_found() -> Answer {
        let body = error_body(
            None,
            "The API could not be found. Please check the API signature.",
        );
        Answer::new(json(StatusCode::NOT_FOUND, &body), RequestOutcome::NotFound)
    }

    /// A server failure a proxy would show: HTTP 500 and an HTML page, no MX body.
    fn plain_500(outcome: RequestOutcome) -> Answer {
        let mut response = Response::new(Body::from(PLAIN_500_BODY));
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
        Answer::new(response, outcome)
    }

    fn dropped(outcome: RequestOutcome) -> Answer {
        Answer {
            drop: true,
            ..Answer::new(Response::new(Body::empty()), outcome)
        }
    }

    fn with_items(self, items: usize) -> Answer {
        Answer { items, ..self }
    }
}

/// Every request on every connection comes through here.
async fn handle(
    sim: Simulator,
    request: Request<Incoming>,
    kill: Arc<Notify>,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_string();
    if let Some(admin) = path.strip_prefix("/_sim/") {
        return Ok(admin_route(&sim, request.method(), admin, request.uri()));
    }
    if !path.starts_with("/v2/") {
        return Ok(Answer::not_found().response);
    }
    if let Some(kind) = sim.outage_at(Instant::now(), true) {
        return Ok(outage_answer(&sim, request, kind, kill).await);
    }
    let route = Route::find(request.method(), &path);
    let query = query_map(request.uri());
    let authorized = route.map(|_| is_authorized(&sim.shared.config, request.headers(), &query));
    let (seq, admission) = {
        let mut state = sim.lock();
        // Arrival is stamped under the lock so log order, limiter order and time order agree.
        let now = Instant::now();
        state.arrive(
            sim.arrived_since_start(now),
            now,
            request.method().as_str(),
            &path,
            authorized,
            route.is_some_and(Route::is_bulk),
        )
    };
    // The body is always read, even for refused requests: closing a socket with unread input
    // resets it, and the client would see a connection error instead of the 401 or 429.
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(Body::new(body), MAX_BODY).await;
    let answer = match (route, admission, body) {
        (None, _, _) => Answer::not_found(),
        (Some(route), Admission::Unauthorized, body) => Answer::new(
            json(
                StatusCode::UNAUTHORIZED,
                &error_body(Some(UNAUTHORIZED), "Invalid access key or secret key"),
            ),
            RequestOutcome::Unauthorized,
        )
        .with_items(bulk_count(route, body.as_deref().ok())),
        (Some(route), Admission::RateLimited(wait, quota), body) => {
            rate_limited(&sim.shared.config, quota, wait)
                .with_items(bulk_count(route, body.as_deref().ok()))
        }
        (Some(_), Admission::Admitted(_), Err(error)) => {
            Answer::bad_request(format!("The request body could not be read: {error}"))
        }
        (Some(route), Admission::Admitted(fault), Ok(body)) => match route {
            Route::Bulk => bulk_post(&sim, seq, &parts.headers, &body, fault, None),
            Route::BulkByField => {
                let search_by = query_param(&query, api::QUERY_SEARCH_BY).unwrap_or_default();
                bulk_post(&sim, seq, &parts.headers, &body, fault, Some(search_by))
            }
            Route::BulkUpdate => bulk_update(&sim, &parts.headers, &body, fault),
            Route::Retrieve => retrieve(&sim, &parts.headers, &query, &body),
            Route::RetrieveByEvent => retrieve_by_event(&sim, &parts.headers, &body),
            Route::DeleteActivities => delete_activities(&sim, &parts.headers, &body),
            Route::DeleteOwnerHistory => delete_owner_history(&sim, &parts.headers, &body),
            Route::ActivityTypes => Answer::ok(&demo::demo_activity_types()),
            Route::UserByAccessKey => {
                Answer::ok(&demo::api_user(&account_host(&sim, &parts.headers)))
            }
        },
    };
    let status = if answer.drop {
        0
    } else {
        answer.response.status().as_u16()
    };
    sim.lock().finish(seq, status, answer.items, answer.outcome);
    sim.shared.requests_answered.send_modify(|n| *n += 1);
    let delay = response_delay(&sim.shared.config) + answer.late_by;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    sim.lock()
        .answered(seq, sim.arrived_since_start(Instant::now()));
    if answer.drop {
        kill.notify_one();
        // The connection task drops this future together with the connection.
        std::future::pending::<()>().await;
    }
    Ok(answer.response)
}

/// A `/v2` request during a staged outage: logged, then a proxy's HTTP 500 or a closed
/// connection, after the configured latency; nothing is done.
async fn outage_answer(
    sim: &Simulator,
    request: Request<Incoming>,
    kind: super::OutageKind,
    kill: Arc<Notify>,
) -> Response<Body> {
    let seq = {
        let now = Instant::now();
        sim.lock().arrive_in_outage(
            sim.arrived_since_start(now),
            request.method().as_str(),
            request.uri().path(),
        )
    };
    let route = Route::find(request.method(), request.uri().path());
    // Read the body: closing a socket with unread input resets it, and a 500 must arrive.
    let body = axum::body::to_bytes(Body::new(request.into_body()), MAX_BODY).await;
    let items = route.map_or(0, |route| bulk_count(route, body.as_deref().ok()));
    let drop = kind != super::OutageKind::Plain500;
    let answer = if drop {
        Answer::dropped(RequestOutcome::Outage)
    } else {
        Answer::plain_500(RequestOutcome::Outage)
    };
    sim.lock().finish(
        seq,
        if drop { 0 } else { 500 },
        items,
        RequestOutcome::Outage,
    );
    sim.shared.requests_answered.send_modify(|n| *n += 1);
    let delay = response_delay(&sim.shared.config);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    sim.lock()
        .answered(seq, sim.arrived_since_start(Instant::now()));
    if drop {
        kill.notify_one();
        std::future::pending::<()>().await;
    }
    answer.response
}

/// Keys from the vendor's headers or, failing those, the query string.
fn is_authorized(config: &SimConfig, headers: &HeaderMap, query: &HashMap<String, String>) -> bool {
    let key = |header: &str, param: &str| {
        headers
            .get(header)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| query_param(query, param).map(str::to_string))
    };
    let access = key(api::HEADER_ACCESS_KEY, api::QUERY_ACCESS_KEY);
    let secret = key(api::HEADER_SECRET_KEY, api::QUERY_SECRET_KEY);
    access.as_deref() == Some(config.access_key.as_str())
        && secret.as_deref() == Some(config.secret_key.as_str())
}

fn rate_limited(config: &SimConfig, quota: Option<RateQuota>, wait: Duration) -> Answer {
    let message = match quota {
        Some(quota) => rate_limit_message(quota.calls, quota.window),
        None => "API calls exceeded the limit".to_string(),
    };
    let body = error_body(Some(api::RATE_LIMIT_EXCEPTION), message);
    let status = match config.rate_limit_style {
        RateLimitStyle::Http429 => StatusCode::TOO_MANY_REQUESTS,
        RateLimitStyle::Http200 => StatusCode::OK,
    };
    let mut response = json(status, &body);
    if config.send_retry_after {
        let seconds = wait.as_nanos().div_ceil(1_000_000_000).max(1);
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds as u64));
    }
    Answer::new(response, RequestOutcome::RateLimited)
}

/// Bulk items in a body that was not processed, for the log.
fn bulk_count(route: Route, body: Option<&[u8]>) -> usize {
    match (route, body) {
        (Route::Bulk | Route::BulkByField | Route::BulkUpdate, Some(body)) => {
            serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(body)
                .map_or(0, |items| items.len())
        }
        _ => 0,
    }
}

/// Post Activities on Leads in Bulk, with the injected fault drawn at arrival. `search_by` is the
/// lead field of the ByLeadField post (its items carry `SearchByValue`); `None` for ByLeadId.
fn bulk_post(
    sim: &Simulator,
    seq: u64,
    headers: &HeaderMap,
    body: &[u8],
    fault: Option<Fault>,
    search_by: Option<&str>,
) -> Answer {
    let rows = match search_by {
        None => parse_json::<Vec<api::ActivityItem>>(headers, body)
            .map(|rows| rows.into_iter().map(Ok).collect::<Vec<_>>()),
        Some(field) => parse_json::<Vec<api::ByFieldItem>>(headers, body)
            .and_then(|rows| by_field_rows(field, rows)),
    };
    let items = rows
        .as_ref()
        .map_or_else(|_| bulk_count(Route::Bulk, Some(body)), Vec::len);
    let answer = match (fault, rows) {
        (Some(Fault::Plain500), _) => {
            return Answer::plain_500(RequestOutcome::Fault500).with_items(items);
        }
        (Some(Fault::Drop), _) => {
            return Answer::dropped(RequestOutcome::Dropped).with_items(items);
        }
        (_, Err(message)) => Answer::bad_request(message),
        (_, Ok(rows)) => bulk_rows(sim, seq, &rows),
    };
    after_commit(sim, fault, answer).with_items(items)
}

/// Update Activities in Bulk: at most 25 items by `ProspectActivityId`, their notes and fields
/// set. Answered per call or per row ([`UpdateAnswer`]); faults as for the bulk post (the
/// commit-then kinds apply the updates first).
fn bulk_update(sim: &Simulator, headers: &HeaderMap, body: &[u8], fault: Option<Fault>) -> Answer {
    let items = match parse_json::<Vec<api::UpdateItem>>(headers, body) {
        Ok(items) => items,
        Err(message) => return Answer::bad_request(message),
    };
    let count = items.len();
    match fault {
        Some(Fault::Plain500) => {
            return Answer::plain_500(RequestOutcome::Fault500).with_items(count);
        }
        Some(Fault::Drop) => return Answer::dropped(RequestOutcome::Dropped).with_items(count),
        _ => {}
    }
    if items.is_empty() || items.len() > MAX_BATCH {
        return Answer::mx(
            INVALID_INPUT,
            format!("A bulk update takes 1 to {MAX_BATCH} activities; {count} were sent"),
        )
        .with_items(count);
    }
    let per_row = sim.shared.config.update_answer == UpdateAnswer::PerRow;
    let now = chrono::Utc::now().timestamp();
    let mut state = sim.lock();
    let checked: Vec<_> = items
        .iter()
        .map(|item| state.validate_update(item))
        .collect();
    if !per_row
        && let Some((i, Err(message))) = checked.iter().enumerate().find(|(_, c)| c.is_err())
    {
        return Answer::mx(INVALID_INPUT, format!("Row {}: {message}", i + 1)).with_items(count);
    }
    let mut response = Vec::with_capacity(count);
    for ((check, item), row_number) in checked.into_iter().zip(&items).zip(1u32..) {
        let (updated, message) = match check {
            Ok(update) => {
                state.apply_update(update, now);
                (true, None)
            }
            Err(message) => (false, Some(message)),
        };
        response.push(api::UpdateResultItem {
            prospect_activity_id: Some(item.prospect_activity_id.clone()),
            row_number: Some(row_number),
            activity_updated: Some(updated),
            exception_message: message,
        });
    }
    drop(state);
    let answer = if per_row {
        Answer::ok(&serde_json::json!({ "Response": response }))
    } else {
        Answer::ok(&serde_json::json!({
            "Status": "Success",
            "Message": { "Message": format!("{count} activities updated") }
        }))
    };
    after_commit(sim, fault, answer).with_items(count)
}

/// The answer of a bulk call whose rows the server has acted on, spoiled by a commit-then fault
/// drawn for it: a 500 or a dropped connection instead, or the answer arriving late.
fn after_commit(sim: &Simulator, fault: Option<Fault>, answer: Answer) -> Answer {
    match fault {
        Some(Fault::CommitThen500) => Answer::plain_500(RequestOutcome::CommittedThen500),
        Some(Fault::CommitThenDrop) => Answer::dropped(RequestOutcome::CommittedThenDropped),
        Some(Fault::CommitThenLate) => Answer {
            outcome: RequestOutcome::CommittedThenLate,
            late_by: sim.shared.config.faults.late_by,
            ..answer
        },
        _ => answer,
    }
}

/// ByLeadField items addressed to their leads' ids, or the row's error when no lead has the
/// value. An unknown field fails the whole call, as a bad query parameter does.
fn by_field_rows(
    field: &str,
    rows: Vec<api::ByFieldItem>,
) -> Result<Vec<Result<api::ActivityItem, String>>, String> {
    if !demo::is_lead_search_field(field) {
        return Err(format!(
            "searchBy {field:?} is not a unique lead field of this account (EmailAddress, Phone, Mobile)"
        ));
    }
    Ok(rows
        .into_iter()
        .map(
            |row| match demo::demo_lead_by_field(field, &row.search_by_value) {
                Some(i) => Ok(row.for_lead(demo::demo_lead_id(i))),
                None => Err(format!(
                    "Lead not found with {field} = '{}'",
                    row.search_by_value
                )),
            },
        )
        .collect())
}

fn bulk_rows(sim: &Simulator, seq: u64, rows: &[Result<api::ActivityItem, String>]) -> Answer {
    if rows.is_empty() {
        return Answer::mx(INVALID_INPUT, "No activities to post");
    }
    if rows.len() > MAX_BATCH {
        return Answer::mx(
            INVALID_INPUT,
            format!(
                "A bulk post takes at most {MAX_BATCH} activities; {} were sent",
                rows.len()
            ),
        );
    }
    let spoil = sim.shared.config.bulk_answer;
    if spoil == BulkAnswer::StatusError200 {
        let body = error_body(None, "The request could not be processed");
        return Answer::new(json(StatusCode::OK, &body), RequestOutcome::Spoiled);
    }
    let now = chrono::Utc::now().timestamp();
    let mut state = sim.lock();
    let checked: Vec<_> = rows
        .iter()
        .map(|row| {
            row.as_ref()
                .map_err(String::clone)
                .and_then(|row| state.validate_row(row))
        })
        .collect();
    if sim.shared.config.reject_mode == RejectMode::WholeBatch
        && let Some((i, Err(message))) = checked.iter().enumerate().find(|(_, c)| c.is_err())
    {
        return Answer::mx(INVALID_INPUT, format!("Row {}: {message}", i + 1));
    }
    let response = checked
        .into_iter()
        .zip(1u32..)
        .map(|(check, row_number)| match check {
            Ok(row) => api::BulkResultItem {
                prospect_activity_id: Some(state.create(row, seq, now)),
                row_number: Some(row_number),
                activity_created: true,
                exception_message: None,
            },
            Err(message) => api::BulkResultItem {
                prospect_activity_id: None,
                row_number: Some(row_number),
                activity_created: false,
                exception_message: Some(message),
            },
        })
        .collect();
    drop(state);
    spoiled_bulk_answer(spoil, response)
}

/// The bulk answer for `response`, spoiled as `spoil` says.
fn spoiled_bulk_answer(spoil: BulkAnswer, mut response: Vec<api::BulkResultItem>) -> Answer {
    let raw = |status: StatusCode, body: Vec<u8>| {
        let mut answer = Response::new(Body::from(body));
        *answer.status_mut() = status;
        answer
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Answer::new(answer, RequestOutcome::Spoiled)
    };
    match spoil {
        BulkAnswer::Faithful | BulkAnswer::StatusError200 => {}
        BulkAnswer::NotJson => {
            return raw(StatusCode::OK, b"<html><body>OK</body></html>".to_vec());
        }
        BulkAnswer::Truncated => {
            let mut body = serde_json::to_vec(&api::BulkResponse { response }).unwrap_or_default();
            body.truncate(body.len() / 2);
            return raw(StatusCode::OK, body);
        }
        BulkAnswer::FewerItems => {
            response.pop();
        }
        BulkAnswer::MoreItems => {
            let extra = response.len() as u32 + 1;
            response.push(api::BulkResultItem {
                prospect_activity_id: Some(uuid::Uuid::new_v4().to_string()),
                row_number: Some(extra),
                activity_created: true,
                exception_message: None,
            });
        }
        BulkAnswer::DuplicateRowNumbers => {
            if let Some(first) = response.first().cloned() {
                response.push(api::BulkResultItem {
                    prospect_activity_id: Some(uuid::Uuid::new_v4().to_string()),
                    ..first
                });
            }
        }
        BulkAnswer::MissingRowNumbers => {
            for item in &mut response {
                item.row_number = None;
            }
        }
        BulkAnswer::CreatedWithoutId => {
            for item in &mut response {
                item.prospect_activity_id = None;
            }
        }
    }
    let answer = Answer::ok(&api::BulkResponse { response });
    if spoil == BulkAnswer::Faithful {
        answer
    } else {
        Answer {
            outcome: RequestOutcome::Spoiled,
            ..answer
        }
    }
}

/// Get Activities of a Lead.
fn retrieve(
    sim: &Simulator,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Answer {
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        api::RetrieveRequest::default()
    } else {
        match parse_json::<api::RetrieveRequest>(headers, body) {
            Ok(request) => request,
            Err(message) => return Answer::bad_request(message),
        }
    };
    let parameter = request.parameter.unwrap_or_default();
    let codes = parameter.activity_event.map(|code| vec![code]);
    // The vendor documents no date filter here: a server following the documentation does not
    // even read FromDate/ToDate (`SimConfig::retrieve_dates`).
    let filter = match sim.shared.config.retrieve_dates {
        RetrieveDates::Ignored => Filter {
            codes,
            from: None,
            to: None,
        },
        RetrieveDates::Honoured => {
            match date_filter(parameter.from_date.as_deref(), parameter.to_date.as_deref()) {
                Ok((from, to)) => Filter { codes, from, to },
                Err(refusal) => return refusal.into(),
            }
        }
    };
    let (offset, row_count) = request
        .paging
        .map_or((0, DEFAULT_ROW_COUNT), |p| (p.offset, p.row_count));
    // RowCount 0 would make every page empty; the vendor's default applies instead.
    let row_count = if row_count == 0 {
        DEFAULT_ROW_COUNT
    } else {
        row_count
    };
    let skip = match sim.shared.config.paging {
        PagingMode::ZeroBasedPage => offset.saturating_mul(row_count),
        PagingMode::OneBasedPage => offset.max(1).saturating_sub(1).saturating_mul(row_count),
        PagingMode::RowOffset => offset,
    };
    let state = sim.lock();
    let Some(lead) = query_param(query, "leadId").and_then(|id| state.resolve_lead(id)) else {
        return Answer::mx(INVALID_ENTITY, "Lead not found");
    };
    let hits = state.query(&lead, &filter);
    let page = hits
        .iter()
        .skip(usize::try_from(skip).unwrap_or(usize::MAX))
        .take(usize::try_from(row_count).unwrap_or(usize::MAX))
        .map(|&i| prospect_activity(&state, state.record(i)))
        .collect();
    let response = api::RetrieveResponse {
        record_count: hits.len() as u64,
        prospect_activities: page,
    };
    drop(state);
    Answer::ok(&response)
}

fn prospect_activity(state: &State, record: &Record) -> api::ProspectActivity {
    let id = record.id();
    let code = record.event_code();
    let name = state.event_name(code);
    let date = record.date_time();
    let mut fields = serde_json::Map::new();
    for (key, value) in record.fields() {
        fields.insert(key, value.into());
    }
    fields.insert("Status".into(), "Active".into());
    if let Some(owner) = state.owner(record) {
        fields.insert("Owner".into(), owner.into());
    }
    let pair = |key: &str, value: &str| api::KeyValue {
        key: key.to_string(),
        value: value.to_string(),
    };
    api::ProspectActivity {
        id: id.clone(),
        event_code: code,
        event_name: name.clone(),
        activity_score: 0,
        created_on: date.clone(),
        // The vendor's sample marks custom activities 2; system ones are told apart by this.
        activity_type: if state.custom_type_name(code).is_some() {
            2
        } else {
            0
        },
        is_email_type: false,
        direction: "Inbound".to_string(),
        session_id: id,
        related_prospect_id: state.lead_id(record).to_string(),
        data: vec![
            pair("CreatedByName", demo::API_USER_NAME),
            pair("EventName", &name),
            pair(api::DATA_KEY_NOTE, record.note().unwrap_or("")),
            pair("HasAttachments", "False"),
        ],
        activity_fields: fields,
        modified_on: record.modified_on(),
    }
}

/// Get Activities by Activity Event: the request read here, answered by `by_event`.
fn retrieve_by_event(sim: &Simulator, headers: &HeaderMap, body: &[u8]) -> Answer {
    match parse_json::<api::ByEventRequest>(headers, body) {
        Err(message) => Answer::bad_request(message),
        Ok(request) => match super::by_event::answer(sim, &request) {
            Ok(response) => Answer::ok(&response),
            Err(message) => Answer::mx(INVALID_INPUT, message),
        },
    }
}

/// Delete Activities of a Lead: validated now, applied after `delete_delay`.
fn delete_activities(sim: &Simulator, headers: &HeaderMap, body: &[u8]) -> Answer {
    let request = match parse_json::<api::DeleteActivitiesRequest>(headers, body) {
        Ok(request) => request,
        Err(message) => return Answer::bad_request(message),
    };
    let lead = match known_lead(sim, &request.prospect_id) {
        Ok(lead) => lead,
        Err(refusal) => return refusal.into(),
    };
    if request.activity_event_list.is_empty() {
        return Answer::mx(INVALID_INPUT, "ActivityEventList is required");
    }
    let mut codes = Vec::with_capacity(request.activity_event_list.len());
    for text in &request.activity_event_list {
        let code = match text.trim().parse::<i64>() {
            Ok(code) => code,
            Err(_) => {
                return Answer::mx(
                    INVALID_INPUT,
                    format!("Invalid activity event code '{text}'"),
                );
            }
        };
        if code == OWNER_CHANGE_EVENT {
            return Answer::mx(
                INVALID_INPUT,
                format!(
                    "Activity event {code} is a system activity; only custom activities can be deleted"
                ),
            );
        }
        if sim.lock().custom_type_name(code).is_none() {
            return Answer::mx(INVALID_INPUT, format!("Invalid activity event code {code}"));
        }
        codes.push(code);
    }
    let (from, to) = match date_filter(request.from_date.as_deref(), request.to_date.as_deref()) {
        Ok(window) => window,
        Err(refusal) => return refusal.into(),
    };
    queue_delete(
        sim,
        lead,
        Filter {
            codes: Some(codes),
            from,
            to,
        },
        request.status_webhook_url,
        "DeleteActivities",
    );
    Answer::ok(&queued(
        "Your request for delete activities has been queued.",
    ))
}

/// Delete a Lead's Owner Change History: validated now, applied after `delete_delay`.
fn delete_owner_history(sim: &Simulator, headers: &HeaderMap, body: &[u8]) -> Answer {
    let request = match parse_json::<api::DeleteOwnerHistoryRequest>(headers, body) {
        Ok(request) => request,
        Err(message) => return Answer::bad_request(message),
    };
    let lead = match known_lead(sim, &request.prospect_id) {
        Ok(lead) => lead,
        Err(refusal) => return refusal.into(),
    };
    let (from, to) = match date_filter(request.from_date.as_deref(), request.to_date.as_deref()) {
        Ok(window) => window,
        Err(refusal) => return refusal.into(),
    };
    queue_delete(
        sim,
        lead,
        Filter {
            codes: Some(vec![OWNER_CHANGE_EVENT]),
            from,
            to,
        },
        request.status_webhook_url,
        "DeleteUserAssignmentChangeHistory",
    );
    Answer::ok(&queued(
        "Your request for delete user assignment change history has been queued.",
    ))
}

/// An application error before it becomes an [`Answer`]: small enough to pass in `Result`s.
struct Refusal {
    exception_type: &'static str,
    message: String,
}

impl From<Refusal> for Answer {
    fn from(refusal: Refusal) -> Answer {
        Answer::mx(refusal.exception_type, refusal.message)
    }
}

/// The lead's lowercase id if the account has it, else the vendor's entity error.
fn known_lead(sim: &Simulator, prospect_id: &str) -> Result<String, Refusal> {
    match sim.lock().resolve_lead(prospect_id) {
        Some(_) => Ok(prospect_id.trim().to_ascii_lowercase()),
        None => Err(Refusal {
            exception_type: INVALID_ENTITY,
            message: "Lead not found".to_string(),
        }),
    }
}

/// An optional `FromDate`/`ToDate` pair as epoch seconds, refusing any other format.
fn date_filter(
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(Option<i64>, Option<i64>), Refusal> {
    let parse = |name: &str, text: Option<&str>| match text {
        None => Ok(None),
        Some(text) => parse_date(text).map(Some).ok_or_else(|| Refusal {
            exception_type: INVALID_INPUT,
            message: format!("Invalid {name} '{text}': expected yyyy-MM-dd HH:mm:ss (UTC)"),
        }),
    };
    Ok((parse("FromDate", from)?, parse("ToDate", to)?))
}

fn queued(message: &str) -> api::QueuedResponse {
    api::QueuedResponse {
        status: "Success".to_string(),
        message: api::QueuedMessage {
            message: message.to_string(),
        },
    }
}

/// What a status webhook receives once a queued delete has run. Not in `api` because the
/// vendor does not document its shape and no client reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct WebhookStatus {
    /// The lead the delete was for, so a receiver can match it to its request.
    pub(super) prospect_id: String,
    /// `"Success"`: the simulator's queue never fails a validated delete.
    pub(super) status: String,
    /// How many activities the delete flagged.
    pub(super) deleted_count: usize,
    /// Which endpoint queued it (`DeleteActivities` or `DeleteUserAssignmentChangeHistory`).
    pub(super) operation: String,
}

/// Applies a delete after the configured delay, like the vendor's queue, then calls the
/// webhook. The lead is resolved again then: activities created meanwhile are deleted too.
fn queue_delete(
    sim: &Simulator,
    lead_id: String,
    filter: Filter,
    webhook: Option<String>,
    operation: &'static str,
) {
    let sim = sim.clone();
    tokio::spawn(async move {
        tokio::time::sleep(sim.shared.config.delete_delay).await;
        let deleted = {
            let mut state = sim.lock();
            match state.resolve_lead(&lead_id) {
                Some(lead @ LeadRef::Known(_)) => state.delete(&lead, &filter),
                _ => 0,
            }
        };
        sim.shared.deletes_applied.send_modify(|n| *n += 1);
        if let Some(url) = webhook.filter(|u| !u.trim().is_empty()) {
            let status = WebhookStatus {
                prospect_id: lead_id,
                status: "Success".to_string(),
                deleted_count: deleted,
                operation: operation.to_string(),
            };
            post_webhook(&url, &status).await;
        }
    });
}

/// POSTs the status to a loopback webhook; anything else is skipped, since the simulator must
/// never send traffic off the machine.
async fn post_webhook(url: &str, status: &WebhookStatus) {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        tracing::debug!("status webhook URL not understood; skipped");
        return;
    };
    if !is_loopback(&parsed) {
        tracing::debug!(
            host = parsed.host_str().unwrap_or(""),
            "status webhook not on loopback; skipped"
        );
        return;
    }
    let Some(client) = webhook_client() else {
        return;
    };
    match client.post(parsed).json(status).send().await {
        Ok(response) => tracing::debug!(status = %response.status(), "status webhook called"),
        Err(error) => tracing::debug!(%error, "status webhook failed"),
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host_str() {
        Some(host) if host.eq_ignore_ascii_case("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// One client for all webhook calls, so connections are reused.
fn webhook_client() -> Option<&'static reqwest::Client> {
    static CLIENT: OnceLock<Option<reqwest::Client>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            // reqwest is built without a default TLS provider and panics when none is
            // installed; installing fails harmlessly if the program already chose one.
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::builder()
                .no_proxy()
                .timeout(WEBHOOK_TIMEOUT)
                .build()
                .map_err(|error| tracing::warn!(%error, "cannot build the webhook client"))
                .ok()
        })
        .as_ref()
}

/// `/_sim/...`: inspection for out-of-process tests; no auth, no limit, not logged.
fn admin_route(sim: &Simulator, method: &Method, route: &str, uri: &Uri) -> Response<Body> {
    if method != Method::GET {
        return Answer::not_found().response;
    }
    match route {
        "requests" => json(StatusCode::OK, &sim.requests()),
        "activities" => {
            let query = query_map(uri);
            match query_param(&query, "lead") {
                Some(lead) => json(StatusCode::OK, &sim.activities_of_lead(lead)),
                None => json(StatusCode::OK, &sim.activities()),
            }
        }
        "stats" => json(StatusCode::OK, &sim.stats()),
        // `?kind=500|reset|refused&ms=N` starts an outage now; `?end=1` ends it; bare, it
        // shows the outage's window.
        "outage" => {
            let query = query_map(uri);
            if query_param(&query, "end").is_some() {
                sim.end_outage();
            } else if let Some(kind) = query_param(&query, "kind") {
                let kind = match kind {
                    "500" => super::OutageKind::Plain500,
                    "reset" => super::OutageKind::Reset,
                    "refused" => super::OutageKind::Refused,
                    _ => return Answer::bad_request("kind: 500, reset or refused").response,
                };
                let ms = query_param(&query, "ms")
                    .and_then(|ms| ms.parse().ok())
                    .unwrap_or(0);
                sim.start_outage(kind, Duration::from_millis(ms));
            }
            json(StatusCode::OK, &sim.outage_window())
        }
        _ => Answer::not_found().response,
    }
}

/// Another integration of the same account: its calls arrive on its own schedule, from
/// `other.from` to `other.until`, and take places in the same window as the client's.
async fn other_client(sim: Simulator, other: OtherClient) {
    const DAY: Duration = Duration::from_secs(86_400);
    let (period, calls) = match other.load {
        OtherLoad::Steady { per_second } if per_second.is_finite() && per_second > 0.0 => {
            let period = Duration::try_from_secs_f64(1.0 / per_second).map_or(DAY, |p| p.min(DAY));
            (period, 1)
        }
        OtherLoad::Bursts { calls, every } if calls > 0 && !every.is_zero() => (every, calls),
        _ => return,
    };
    let start = sim.shared.started + other.from;
    let mut ticks = tokio::time::interval_at(start.into(), period.max(Duration::from_micros(100)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let now = ticks.tick().await.into_std();
        let arrived = sim.arrived_since_start(now);
        if other.until.is_some_and(|until| arrived >= until) {
            return;
        }
        let mut state = sim.lock();
        for _ in 0..calls {
            state.other_arrival(arrived, now);
        }
    }
}

/// `latency` ± uniform `jitter`, never negative.
fn response_delay(config: &SimConfig) -> Duration {
    if config.jitter.is_zero() {
        return config.latency;
    }
    let offset = (fastrand::f64() * 2.0 - 1.0) * config.jitter.as_secs_f64();
    Duration::try_from_secs_f64((config.latency.as_secs_f64() + offset).max(0.0))
        .unwrap_or_default()
}

fn error_body(exception_type: Option<&str>, message: impl Into<String>) -> api::ErrorBody {
    api::ErrorBody {
        status: "Error".to_string(),
        exception_type: exception_type.map(str::to_string),
        exception_message: Some(message.into()),
    }
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Body> {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut response = Response::new(Body::from(bytes));
            *response.status_mut() = status;
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
            response
        }
        Err(error) => {
            tracing::error!(%error, "simulator could not serialize a response");
            Answer::plain_500(RequestOutcome::Fault500).response
        }
    }
}

/// The vendor insists on `application/json`; anything else (or bad JSON) is a 400.
fn parse_json<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, String> {
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err("The request's Content-Type must be application/json".to_string());
    }
    serde_json::from_slice(body)
        .map_err(|error| format!("The message body is not as per API specification: {error}"))
}

fn query_map(uri: &Uri) -> HashMap<String, String> {
    axum::extract::Query::<HashMap<String, String>>::try_from_uri(uri)
        .map(|q| q.0)
        .unwrap_or_default()
}

/// Query parameter names are case-insensitive on the vendor's side.
fn query_param<'a>(query: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}
