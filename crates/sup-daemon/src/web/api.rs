//! What the web listener asks the supervisor: the apps, the metrics, the
//! probes' answers, and the dashboard's actions. Every answer comes from
//! the same requests the CLI sends, so the page, `/metrics` and `list`
//! agree.

use crate::supervisor::Msg;
use hyper::StatusCode;
use sup_proto::{AppInfo, ErrorKind, Request, Response, Status, Target};
use tokio::sync::{mpsc, oneshot};

/// The supervisor's answer to `request` (None: it is stopping).
async fn ask(tx: &mpsc::UnboundedSender<Msg>, request: Request) -> Option<Response> {
    let (reply, answer) = oneshot::channel();
    tx.send(Msg::Request(request, reply)).ok()?;
    answer.await.ok()
}

/// Every app, as `sup list --json` has them.
pub async fn apps(tx: &mpsc::UnboundedSender<Msg>) -> Option<Vec<AppInfo>> {
    match ask(tx, Request::List).await? {
        Response::Apps(apps) => Some(apps),
        _ => None,
    }
}

/// The app with id `id`, or the status and reason to refuse.
pub async fn app(
    tx: &mpsc::UnboundedSender<Msg>,
    id: &str,
) -> Result<AppInfo, (StatusCode, String)> {
    let Ok(id) = id.parse::<u32>() else {
        return Err((
            StatusCode::BAD_REQUEST,
            "app=ID: an app's numeric id".into(),
        ));
    };
    match ask(tx, Request::Describe(Target::Id(id))).await {
        Some(Response::Apps(mut apps)) if !apps.is_empty() => Ok(apps.swap_remove(0)),
        Some(Response::Error { message, .. }) => Err((StatusCode::NOT_FOUND, message)),
        Some(_) => Err((StatusCode::NOT_FOUND, format!("no app with id {id}"))),
        None => Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon is stopping".into(),
        )),
    }
}

/// `ID/ACTION` of `POST /api/apps/ID/ACTION`: its answer's status and body.
pub async fn act(tx: &mpsc::UnboundedSender<Msg>, rest: &str) -> (StatusCode, serde_json::Value) {
    let refuse = |status, why: String| (status, serde_json::json!({ "error": why }));
    let Some((Ok(id), action)) = rest.split_once('/').map(|(id, a)| (id.parse::<u32>(), a)) else {
        return refuse(StatusCode::NOT_FOUND, "POST /api/apps/ID/ACTION".into());
    };
    let target = Target::Id(id);
    let request = match action {
        "restart" => Request::Restart(target),
        "reload" => Request::Reload(target),
        "stop" => Request::Stop(target),
        "start" => Request::Start(target),
        other => {
            return refuse(
                StatusCode::NOT_FOUND,
                format!("no action {other:?}: restart, reload, stop or start"),
            )
        }
    };
    match ask(tx, request).await {
        Some(Response::Apps(apps)) => (StatusCode::OK, serde_json::json!(apps)),
        Some(Response::Ok | Response::Note(_)) => (StatusCode::OK, serde_json::json!([])),
        Some(Response::Error { kind, message }) => {
            let status = match kind {
                ErrorKind::NotFound => StatusCode::NOT_FOUND,
                _ => StatusCode::CONFLICT,
            };
            refuse(status, message)
        }
        Some(_) => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unexpected answer".into(),
        ),
        None => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon is stopping".into(),
        ),
    }
}

/// The apps' metrics, from the same figures as `list`.
pub async fn metrics(tx: &mpsc::UnboundedSender<Msg>) -> Option<String> {
    let Response::Pong { started_at_ms, .. } = ask(tx, Request::Ping).await? else {
        return None;
    };
    let apps = apps(tx).await?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let uptime = now_ms.saturating_sub(started_at_ms) as f64 / 1000.0;
    Some(crate::metrics::render(&apps, uptime))
}

/// Why not every app is online and ready, or None when all are.
pub async fn not_ready(tx: &mpsc::UnboundedSender<Msg>) -> Option<String> {
    let Some(apps) = apps(tx).await else {
        return Some("the daemon is stopping".into());
    };
    let waiting: Vec<String> = apps
        .iter()
        .filter(|a| a.status != Status::Online || a.ready_instances < a.instances.len() as u32)
        .map(|a| format!("{} ({})", a.name, a.status.as_str()))
        .collect();
    match (apps.is_empty(), waiting.is_empty()) {
        (true, _) => Some("no apps".into()),
        (false, true) => None,
        (false, false) => Some(waiting.join(", ")),
    }
}
