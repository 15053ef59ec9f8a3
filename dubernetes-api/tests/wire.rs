//! The JSON of the API's types is the wire format: these documents are what
//! servers sent before the types moved here and became enums, byte for byte.

use dubernetes_api::{
    ApiError, ApplyResponse, Condition, ConditionType, ContainerState, ErrorCode, Event, EventKind, FieldError,
    LogLine, LogStream, Phase, Pod, PodSpec, PodStatus, Replica, Revision, RolloutOutcome, WatchEvent, WatchKind,
};

fn spec_json() -> String {
    serde_json::to_string(&PodSpec::new("web", "img:v1")).expect("spec")
}

fn pod() -> Pod {
    Pod {
        name: "web".into(),
        spec: PodSpec::new("web", "img:v1"),
        generation: 2,
        created_at: 10,
        updated_at: 20,
        status: PodStatus {
            observed_generation: 2,
            desired_replicas: 1,
            ready_replicas: 1,
            updated_replicas: 1,
            current_replicas: 1,
            revision: "abc".into(),
            phase: Phase::Running,
            reason: None,
            message: None,
            revision_number: 2,
            conditions: vec![Condition {
                kind: ConditionType::Available,
                status: true,
                reason: "MinimumReplicasAvailable".into(),
                message: "1 of 1".into(),
            }],
            restarts: 0,
            last_exit_code: None,
            tls: None,
            warnings: Vec::new(),
        },
        replicas: vec![Replica {
            name: "dub-t-web-x".into(),
            id: "0123456789ab".into(),
            state: ContainerState::Running,
            status: "Up 1 second".into(),
            revision: "abc".into(),
            up_to_date: true,
            ready: true,
            check_error: None,
            ip: Some("10.0.0.2".into()),
            created: 5,
        }],
    }
}

fn pod_json() -> String {
    format!(
        r#"{{"name":"web","spec":{},"generation":2,"created_at":10,"updated_at":20,"status":{{"observed_generation":2,"desired_replicas":1,"ready_replicas":1,"updated_replicas":1,"current_replicas":1,"revision":"abc","phase":"Running","reason":null,"message":null,"revision_number":2,"conditions":[{{"type":"Available","status":true,"reason":"MinimumReplicasAvailable","message":"1 of 1"}}],"restarts":0,"last_exit_code":null}},"replicas":[{{"name":"dub-t-web-x","id":"0123456789ab","state":"running","status":"Up 1 second","revision":"abc","up_to_date":true,"ready":true,"check_error":null,"ip":"10.0.0.2","created":5}}]}}"#,
        spec_json()
    )
}

/// Serializes `value`, checks the text, and checks that the text reads back as `value`.
fn same<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T, json: &str) {
    assert_eq!(serde_json::to_string(value).expect("serialize"), json);
    assert_eq!(&serde_json::from_str::<T>(json).expect("deserialize"), value);
}

#[test]
fn a_pod_view_is_the_same_json() {
    same(&pod(), &pod_json());
}

#[test]
fn watch_entries_revisions_events_and_log_lines_are_the_same_json() {
    let event = Event {
        id: 3,
        pod: "web".into(),
        at: 30,
        kind: EventKind::Warning,
        reason: "Crashed".into(),
        message: "exit 1".into(),
    };
    same(
        &event,
        r#"{"id":3,"pod":"web","at":30,"kind":"Warning","reason":"Crashed","message":"exit 1"}"#,
    );
    let modified = WatchEvent {
        version: 9,
        kind: WatchKind::Modified,
        name: "web".into(),
        pod: Some(pod()),
        event: None,
    };
    same(
        &modified,
        &format!(r#"{{"version":9,"type":"MODIFIED","name":"web","pod":{}}}"#, pod_json()),
    );
    let recorded = WatchEvent {
        version: 10,
        kind: WatchKind::Event,
        name: "web".into(),
        pod: None,
        event: Some(event),
    };
    same(
        &recorded,
        r#"{"version":10,"type":"EVENT","name":"web","event":{"id":3,"pod":"web","at":30,"kind":"Warning","reason":"Crashed","message":"exit 1"}}"#,
    );
    let revision = Revision {
        number: 1,
        hash: "abc".into(),
        spec: PodSpec::new("web", "img:v1"),
        created_at: 1,
        outcome: RolloutOutcome::Superseded,
        reason: None,
        message: None,
        finished_at: Some(2),
    };
    same(
        &revision,
        &format!(
            r#"{{"number":1,"hash":"abc","spec":{},"created_at":1,"outcome":"superseded","reason":null,"message":null,"finished_at":2}}"#,
            spec_json()
        ),
    );
    let line = LogLine {
        replica: "web-x".into(),
        stream: LogStream::Stderr,
        line: "boom".into(),
        truncated: false,
    };
    same(&line, r#"{"replica":"web-x","stream":"stderr","line":"boom"}"#);
}

#[test]
fn error_bodies_and_apply_answers_are_the_same_json() {
    let error = ApiError {
        code: ErrorCode::InvalidSpec,
        message: "invalid pod \"web\": replicas: too many".into(),
        field: Some("replicas".into()),
        fields: vec![FieldError::new("replicas", "too many")],
    };
    same(
        &error,
        r#"{"code":"invalid_spec","message":"invalid pod \"web\": replicas: too many","field":"replicas","fields":[{"field":"replicas","message":"too many"}]}"#,
    );
    let answer: ApplyResponse = serde_json::from_str(r#"{"outcome":"unchanged","pod":null}"#).expect("old answer");
    assert!(!answer.dry_run && answer.pod.is_none());
    assert_eq!(
        serde_json::to_string(&answer).expect("json"),
        r#"{"outcome":"unchanged","dry_run":false,"pod":null}"#
    );
}
