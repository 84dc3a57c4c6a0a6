use axum::{
    Json,
    body::Bytes,
    extract::{State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode, header},
    response::IntoResponse,
};
use tuner_api::{
    Best, ErrorBody, ExtendRequest, Importance, SortKey, SortOrder, StreamStart, Study, StudyList,
    TrialEvent, TrialList, TrialQuery, TrialView,
};
use tuner_core::{
    SpecFormat, StudyId, StudySpec, StudyState, TrainerKind, cnn, parse_spec, parse_spec_value,
    sets_optimizer_seed,
};
use tuner_store::{NewStudy, StudyRecord};

use super::{JsonBody, PathId, StudyRefusals, UrlQuery, body_bytes};
use crate::{ApiError, AppState, ConflictCode, read_models::study_view, settle::settle, views};

/// Which syntax the body is in, from its content type.
fn body_format(headers: &HeaderMap) -> Result<SpecFormat, ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        // YAML reads JSON too, so an unlabelled body is read as YAML.
        return Ok(SpecFormat::Yaml);
    };
    let mime = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => Ok(SpecFormat::Json),
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" | "text/plain"
        | "" => Ok(SpecFormat::Yaml),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "cannot read a search space sent as `{other}`; send application/json or application/yaml"
        ))),
    }
}

/// What this server can run, beyond what the document format allows: a
/// built-in-trainer study may only tune parameters the
/// trainer understands, with values it can train.
pub fn check_supported(spec: &StudySpec) -> Result<(), ApiError> {
    let mut problems = Vec::new();
    if spec.trainer.kind == TrainerKind::FashionMnistCnn {
        problems.extend(cnn::check_space(&spec.parameters, &spec.fixed));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::InvalidSpec(problems))
    }
}

#[utoipa::path(
    post,
    path = "/studies",
    tag = "studies",
    summary = "Create a study from a search-space document",
    request_body(description = "The search-space document (DESIGN §3) as YAML or JSON, chosen by Content-Type; an unlabelled body is read as YAML", content((String = "application/yaml"), (serde_json::Value = "application/json"))),
    responses(
        (status = 201, description = "Created; `Location` names it", body = Study),
        (status = 401, description = "The server has a token and the request did not send it", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Neither YAML nor JSON", body = ErrorBody),
        (status = 422, description = "Invalid search space; `details` has every problem with its path", body = ErrorBody)
    )
)]
pub async fn create_study(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let bytes = body_bytes(&state, body)?;
    let format = body_format(&headers)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::invalid("the request body is not UTF-8 text", Vec::new()))?;
    let mut spec = parse_spec(text, format)?;
    check_supported(&spec)?;
    if !sets_optimizer_seed(text, format) {
        // Stored with the study, so its sequence can still be replayed on purpose.
        spec.optimizer.seed = rand::random::<u32>().into();
    }
    let doc = serde_json::to_value(&spec)
        .map_err(|e| ApiError::Internal(format!("serializing a spec: {e}")))?;
    let record = state
        .store()
        .create_study(
            NewStudy {
                name: spec.name.clone(),
                spec: doc,
                direction: spec.objective.direction,
                max_retries: spec.budget.max_retries,
            },
            state.now_ms(),
        )
        .await?;
    tracing::info!(study = %record.id, name = %record.name, "study created");
    let view = views::study(&record, &spec, Default::default(), None, true);
    let location = format!("/studies/{}", record.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(view),
    ))
}

#[utoipa::path(
    get,
    path = "/studies",
    tag = "studies",
    summary = "List studies with counts and best trial",
    responses(
        (status = 200, body = StudyList),
        (status = 401, description = "The server has a token and the request did not send it", body = ErrorBody)
    )
)]
pub async fn list_studies(State(state): State<AppState>) -> Result<Json<StudyList>, ApiError> {
    let records = state.store().list_studies().await?;
    let mut studies = Vec::with_capacity(records.len());
    for record in records {
        studies.push(study_view(&state, record.id, false).await?);
    }
    Ok(Json(StudyList { studies }))
}

#[utoipa::path(
    get,
    path = "/studies/{id}",
    tag = "studies",
    summary = "A study with its search space, counts and best trial",
    params(("id" = i64, Path, description = "The study id")),
    responses(
        (status = 200, body = Study),
        StudyRefusals
    )
)]
pub async fn get_study(
    State(state): State<AppState>,
    PathId(id): PathId<StudyId>,
) -> Result<Json<Study>, ApiError> {
    Ok(Json(study_view(&state, id, true).await?))
}

#[utoipa::path(
    delete,
    path = "/studies/{id}",
    tag = "studies",
    summary = "Delete a study and all its trials",
    params(("id" = i64, Path, description = "The study id")),
    responses(
        (status = 204, description = "Deleted"),
        StudyRefusals
    )
)]
pub async fn delete_study(
    State(state): State<AppState>,
    PathId(id): PathId<StudyId>,
) -> Result<StatusCode, ApiError> {
    state.store().delete_study(id).await?;
    state.forget_study(id);
    tracing::info!(study = %id, "study deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Whether the client asked for a live event stream instead of a list.
fn wants_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}

#[utoipa::path(
    get,
    path = "/studies/{id}/trials",
    tag = "trials",
    summary = "A study's trials (JSON), or a live stream of trial events with `Accept: text/event-stream`",
    params(("id" = i64, Path, description = "The study id"), TrialQuery, ("Last-Event-ID" = Option<i64>, Header, description = "Event stream only: resume after this event")),
    responses(
        (status = 200, description = "The trials, or (event stream) one SSE event per trial event: name = kind, id = event id, data = TrialEvent; a `study` event (no id) carries the Study when it is stopped, paused or resumed; an `end` event carries the final Study", content((TrialList = "application/json"), (TrialEvent = "text/event-stream"))),
        StudyRefusals,
        (status = 422, description = "Malformed request; `details` names each problem", body = ErrorBody)
    )
)]
pub async fn list_trials(
    State(state): State<AppState>,
    PathId(id): PathId<StudyId>,
    headers: HeaderMap,
    query: Result<UrlQuery<TrialQuery>, ApiError>,
) -> Result<axum::response::Response, ApiError> {
    if wants_event_stream(&headers) {
        // 404 now rather than an empty stream; and the state changes are announced
        // against, read before the client can see the stream open.
        let study_state = state.store().get_study(id).await?.state;
        let UrlQuery(query) = query?;
        let resume = headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok());
        let after = match (resume, query.after) {
            (Some(id), _) => id,
            (None, None) => 0,
            (None, Some(StreamStart::Now)) => state.store().last_event_id(id).await?,
            (None, Some(StreamStart::After(n))) => n,
        };
        return Ok(crate::watch::event_stream(state, id, after, study_state).into_response());
    }
    let UrlQuery(query) = query?;
    Ok(list_trial_json(state, id, query).await?.into_response())
}

async fn list_trial_json(
    state: AppState,
    id: StudyId,
    query: TrialQuery,
) -> Result<Json<TrialList>, ApiError> {
    let sort_key: fn(&tuner_store::TrialRecord) -> Option<f64> =
        match query.sort.unwrap_or_default() {
            SortKey::Number => |t| Some(t.number as f64),
            SortKey::Value => |t| t.value,
            SortKey::Duration => |t| match (t.started_at, t.finished_at) {
                (Some(s), Some(f)) => Some((f - s) as f64),
                _ => None,
            },
            SortKey::Epoch => |t| t.last_epoch.map(f64::from),
            SortKey::State => |t| Some(t.state as u8 as f64),
        };
    let descending = query.order == Some(SortOrder::Desc);
    // Read before the trials: a change committed in between is in this answer or in
    // the next `changed_after` one, never in neither.
    let last_event_id = state.store().last_event_id(id).await?;
    let mut trials = match query.changed_after {
        Some(after) => state.store().trials_changed_after(id, after).await?,
        None => state.store().trial_summaries(id).await?,
    };
    trials.retain(|t| query.state.is_none_or(|w| t.state == w));
    // Stable sorts on (key, number): equal keys stay in trial order.
    trials.sort_by(|a, b| match (sort_key(a), sort_key(b)) {
        (Some(x), Some(y)) => {
            let by_key = x.total_cmp(&y);
            if descending { by_key.reverse() } else { by_key }
        }
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    let total = trials.len() as u64;
    let offset = query.offset.unwrap_or(0).min(trials.len());
    let end = query
        .limit
        .map_or(trials.len(), |l| offset.saturating_add(l).min(trials.len()));
    let mut page: Vec<_> = trials.drain(offset..end).collect();
    if query.view.unwrap_or_default() == TrialView::Full {
        let ids: Vec<_> = page.iter().map(|t| t.id).collect();
        let mut epochs = state.store().epochs_of_trials(&ids).await?;
        for t in &mut page {
            t.epochs = epochs.remove(&t.id).unwrap_or_default();
        }
    } else {
        for t in &mut page {
            t.metrics = None;
        }
    }
    Ok(Json(TrialList {
        trials: page.iter().map(views::trial).collect(),
        total,
        last_event_id,
    }))
}

#[utoipa::path(
    get,
    path = "/studies/{id}/best",
    tag = "studies",
    summary = "The best completed trial and its full config (fixed values included)",
    params(("id" = i64, Path, description = "The study id")),
    responses(
        (status = 200, body = Best),
        (status = 401, description = "The server has a token and the request did not send it", body = ErrorBody),
        (status = 404, description = "No such study, or nothing completed yet", body = ErrorBody)
    )
)]
pub async fn best_trial(
    State(state): State<AppState>,
    PathId(id): PathId<StudyId>,
) -> Result<Json<Best>, ApiError> {
    let record = state.study(id).await?;
    let spec = state.spec_of(&record)?;
    let best = state
        .store()
        .best_trial(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("study {id} has no completed trial yet")))?;
    Ok(Json(Best {
        study_id: id,
        trial: views::trial(&best),
        config: spec.config(&best.params),
    }))
}

async fn change_state(
    state: &AppState,
    id: StudyId,
    from: &[StudyState],
    to: StudyState,
    reason: &str,
) -> Result<Json<Study>, ApiError> {
    // Under the ask lock, so no trial is handed out mid-change.
    let lock = state.ask_lock(id);
    let _serialized = lock.lock().await;
    let record = state.study(id).await?;
    change_state_locked(state, &record, from, to, reason).await
}

/// [`change_state`] for a caller that holds the study's ask lock and has read `record`
/// under it.
async fn change_state_locked(
    state: &AppState,
    record: &StudyRecord,
    from: &[StudyState],
    to: StudyState,
    reason: &str,
) -> Result<Json<Study>, ApiError> {
    let id = record.id;
    if !from.contains(&record.state) {
        return Err(ApiError::Conflict {
            code: ConflictCode::InvalidStudyState,
            message: format!("study {id} is {}; cannot make it {to}", record.state),
        });
    }
    state
        .set_study_state(id, to, Some(reason), state.now_ms())
        .await?;
    if to == StudyState::Running {
        // Resuming a study whose budget was already spent completes it at once.
        settle(state, id, true).await?;
    }
    Ok(Json(study_view(state, id, true).await?))
}

#[utoipa::path(
    post,
    path = "/studies/{id}/stop",
    tag = "studies",
    summary = "Stop a study: no new trials; running ones are told to stop",
    params(("id" = i64, Path, description = "The study id")),
    responses(
        (status = 200, body = Study),
        StudyRefusals,
        (status = 409, description = "The study is not running or paused", body = ErrorBody)
    )
)]
pub async fn stop_study(
    State(state): State<AppState>,
    PathId(id): PathId<StudyId>,
) -> Result<Json<Study>, ApiError> {
    change_state(
        &state,
        id,
        &[StudyState::Running, StudyState::Paused],
        StudyState::Stopped,
        "stopped by the user",
    )
    .await
}

#[utoipa::path(
    post,
    path = "/studies/{id}/pause",
    tag = "studies",
    summary = "Pause a study: no new trials until resumed",
    params(("id" = i64, Path, description = "The study id")),
    responses(
        (status = 200, body = Study),
        StudyRefusals,
        (status = 409, description = "The study is not running", body = ErrorBody)
    )
)]
pub async fn pause_study(
    State(state): State<AppState>,
    PathId(id): PathId<StudyId>,
) -> Result<Json<Study>, ApiError> {
    change_state(
        &state,
        id,
        &[StudyState::Running],
        StudyState::Paused,
        "paused by the user",
    )
    .await
}

#[utoipa::path(
    post,
    path = "/studies/{id}/resume",
    tag = "studies",
    summary = "Resume a paused, stopped or failed study, or a completed one whose budget is not spent",
    description = "A failed study starts a new failure streak. A completed study whose `max_trials` is spent is refused with 409: extend it instead (`POST /studies/{id}/extend`).",
    params(("id" = i64, Path, description = "The study id")),
    responses(
        (status = 200, body = Study),
        StudyRefusals,
        (status = 409, description = "The study is running, or completed with its budget spent", body = ErrorBody)
    )
)]
pub async fn resume_study(
    State(state): State<AppState>,
    PathId(id): PathId<StudyId>,
) -> Result<Json<Study>, ApiError> {
    let lock = state.ask_lock(id);
    let _serialized = lock.lock().await;
    let record = state.study(id).await?;
    if record.state == StudyState::Completed {
        let spec = state.spec_of(&record)?;
        let spent = state.store().trial_counts(id).await?.spent();
        let max_trials = spec.budget.max_trials;
        if spent >= u64::from(max_trials) {
            return Err(ApiError::Conflict {
                code: ConflictCode::InvalidStudyState,
                message: format!(
                    "study {id} is completed: its budget of {max_trials} trials is spent; \
                     extend it to run more (POST /studies/{id}/extend with \
                     {{\"max_trials\": N}}, or `tuner-cli extend {id} --max-trials N`)"
                ),
            });
        }
    }
    change_state_locked(
        &state,
        &record,
        &[
            StudyState::Paused,
            StudyState::Stopped,
            StudyState::Failed,
            StudyState::Completed,
        ],
        StudyState::Running,
        "resumed by the user",
    )
    .await
}

#[utoipa::path(
    post,
    path = "/studies/{id}/extend",
    tag = "studies",
    summary = "Raise a study's budget (`max_trials`); a completed study runs again",
    description = "`max_trials` is the new total. Every server sharing the database uses it from its next ask. A running, paused or stopped study keeps its state; a completed one is resumed; a failed one stays failed until resumed.",
    params(("id" = i64, Path, description = "The study id")),
    request_body = ExtendRequest,
    responses(
        (status = 200, body = Study),
        StudyRefusals,
        (status = 422, description = "`max_trials` is not above the current one, or below the trials already handed out", body = ErrorBody)
    )
)]
pub async fn extend_study(
    State(state): State<AppState>,
    PathId(id): PathId<StudyId>,
    JsonBody(req): JsonBody<ExtendRequest>,
) -> Result<Json<Study>, ApiError> {
    let lock = state.ask_lock(id);
    let _serialized = lock.lock().await;
    let record = state.study(id).await?;
    let current = state.spec_of(&record)?.budget.max_trials;
    let handed_out = state.store().trial_counts(id).await?.spent();
    let refuse = |message: String| {
        ApiError::invalid(
            message.clone(),
            vec![tuner_core::Problem::new("max_trials", message)],
        )
    };
    if req.max_trials <= current {
        return Err(refuse(format!(
            "max_trials must be above the study's current {current}"
        )));
    }
    if u64::from(req.max_trials) < handed_out {
        return Err(refuse(format!(
            "max_trials must be at least the {handed_out} trials already handed out"
        )));
    }
    let mut spec = record.spec.clone();
    let budget = spec
        .as_object_mut()
        .ok_or_else(|| ApiError::Internal(format!("stored spec of study {id} is not an object")))?
        .entry("budget")
        .or_insert_with(|| serde_json::json!({}));
    match budget.as_object_mut() {
        Some(budget) => {
            budget.insert("max_trials".into(), req.max_trials.into());
        }
        None => {
            return Err(ApiError::Internal(format!(
                "stored budget of study {id} is not an object"
            )));
        }
    }
    // The same document with one number changed must still parse; check before storing.
    parse_spec_value(&spec)?;
    let (to, reason) = if record.state == StudyState::Completed {
        (
            StudyState::Running,
            format!("extended to {} trials", req.max_trials),
        )
    } else {
        (
            record.state,
            record.state_reason.clone().unwrap_or_default(),
        )
    };
    let reason = (!reason.is_empty()).then_some(reason);
    state
        .changing_study(
            id,
            state
                .store()
                .set_study_spec(id, &spec, to, reason.as_deref(), state.now_ms()),
        )
        .await?;
    Ok(Json(study_view(&state, id, true).await?))
}

#[utoipa::path(
    get,
    path = "/studies/{id}/importance",
    tag = "studies",
    summary = "Parameter importance from the optimizer's model",
    params(("id" = i64, Path, description = "The study id")),
    responses(
        (status = 200, body = Importance),
        StudyRefusals
    )
)]
pub async fn parameter_importance(
    State(state): State<AppState>,
    PathId(id): PathId<StudyId>,
) -> Result<Json<Importance>, ApiError> {
    let answer = crate::importance::importance(&state, id).await?;
    Ok(Json(Importance::clone(&answer)))
}
