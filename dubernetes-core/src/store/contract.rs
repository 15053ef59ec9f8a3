//! The contract of the `Store` trait: what every implementation must do, as test
//! functions that take a fresh, empty store. An implementation runs them all
//! with one line, [`store_contract_tests!`](crate::store_contract_tests):
//!
//! ```ignore
//! crate::store_contract_tests!(file_store().await);
//! ```
//!
//! What only one implementation can show (a file that survives a reopen, its
//! mode, a corrupt file) stays in that implementation's own tests. The
//! macro is exported (hidden, with the `testing` feature) for the
//! PostgreSQL store's, which need a real database and so run as an
//! integration test (`tests/postgres/`), not in the lib tests.

// Each case's name says what it checks.
#![allow(missing_docs)]

use std::collections::HashSet;

use super::{
    ApplyOutcome, CertificateKind, MAX_EVENT_MESSAGE_BYTES, MAX_EVENTS, MAX_REVISIONS, Store, StoredCertificate,
};
use crate::error::Error;
use crate::ownership::Adoption;
use crate::spec::PodSpec;
use crate::test_internals::TestStore;

/// One `#[tokio::test]` per contract case, each on a store made by `$new`:
/// an expression, evaluated inside the async test, that yields
/// `(guard, TestStore)`; the guard (a temporary dir, a scratch schema) lives
/// until the case ends.
#[macro_export]
#[doc(hidden)]
macro_rules! store_contract_tests {
    ($new:expr) => {
        $crate::store_contract_tests!(@but_backup $new);
        $crate::store_contract_tests!(@cases $new; a_backup_is_private_and_never_overwrites);
    };
    // Every case but the backup (a store that cannot write a file copy of
    // itself: in memory, or PostgreSQL, backed up with its own tools).
    (@but_backup $new:expr) => {
        $crate::store_contract_tests!(@cases $new;
            upsert_reports_created_configured_unchanged_and_bumps_generation,
            a_write_at_a_stale_generation_is_refused_and_changes_nothing,
            the_pod_limit_counts_new_pods_only,
            a_host_belongs_to_one_pod,
            revisions_follow_template_changes_and_roll_back,
            revisions_are_pruned_but_never_the_current_or_the_last_complete,
            events_are_listed_per_pod_in_order,
            events_resume_after_an_id,
            event_messages_are_cut_and_the_log_is_bounded,
            the_store_id_is_written_once_and_gone_adoptions_are_forgotten,
            a_spec_over_the_stored_limit_is_refused_and_nothing_is_written,
            certificates_are_replaced_by_name_and_deleted,
            secret_checks_and_their_writes_are_one_transaction,
            acme_accounts_are_kept_per_directory
        );
    };
    (@cases $new:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (_guard, store) = $new;
                $crate::test_internals::store_contract::$case(&store).await;
                store.close().await;
            }
        )*
    };
}

/// An unconditional apply (no generation, no pod limit).
async fn upsert(store: &dyn Store, spec: &PodSpec) -> (i64, ApplyOutcome) {
    let (pod, outcome) = store.upsert_checked(spec, None, u32::MAX).await.expect("upsert");
    (pod.generation, outcome)
}

pub async fn upsert_reports_created_configured_unchanged_and_bumps_generation(store: &TestStore) {
    let store = store.store();
    let spec = PodSpec::new("web", "img:1").with_replicas(2);
    assert_eq!(upsert(store, &spec).await, (1, ApplyOutcome::Created));
    assert_eq!(upsert(store, &spec).await, (1, ApplyOutcome::Unchanged));
    assert_eq!(
        upsert(store, &spec.clone().with_replicas(3)).await,
        (2, ApplyOutcome::Configured)
    );
    let pod = store.get("web").await.expect("get").expect("pod");
    assert_eq!((pod.spec.replicas, pod.generation), (3, 2));
    assert!(pod.created_at <= pod.updated_at);
    upsert(store, &PodSpec::new("api", "img:1")).await;
    let names: Vec<_> = store
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|p| p.spec.name)
        .collect();
    assert_eq!(names, ["api", "web"], "listed by name");
    assert!(store.delete_checked("web", None).await.expect("delete"));
    assert!(!store.delete_checked("web", None).await.expect("delete again"));
    assert_eq!(store.get("web").await.expect("get"), None);
}

pub async fn a_write_at_a_stale_generation_is_refused_and_changes_nothing(store: &TestStore) {
    let store = store.store();
    let spec = PodSpec::new("web", "img:1");
    let err = store.upsert_checked(&spec, Some(1), 10).await.expect_err("no such pod");
    assert!(matches!(err, Error::NotFound(ref p) if p == "web"), "{err:?}");
    assert_eq!(store.get("web").await.expect("get"), None);
    upsert(store, &spec).await;
    let (pod, _) = store
        .upsert_checked(&spec.clone().with_replicas(2), Some(1), 10)
        .await
        .expect("at the read generation");
    assert_eq!(pod.generation, 2);
    let err = store
        .upsert_checked(&spec.clone().with_replicas(5), Some(1), 10)
        .await
        .expect_err("stale");
    assert!(
        matches!(
            err,
            Error::StaleGeneration {
                expected: 1,
                current: 2,
                ..
            }
        ),
        "{err:?}"
    );
    let err = store.delete_checked("web", Some(1)).await.expect_err("stale delete");
    assert!(matches!(err, Error::StaleGeneration { .. }), "{err:?}");
    let pod = store.get("web").await.expect("get").expect("still there");
    assert_eq!((pod.spec.replicas, pod.generation), (2, 2), "nothing written");
    assert!(!store.delete_checked("gone", Some(1)).await.expect("missing"));
    assert!(store.delete_checked("web", Some(2)).await.expect("delete"));
}

pub async fn the_pod_limit_counts_new_pods_only(store: &TestStore) {
    let store = store.store();
    store
        .upsert_checked(&PodSpec::new("a", "img:1"), None, 1)
        .await
        .expect("first");
    let err = store
        .upsert_checked(&PodSpec::new("b", "img:1"), None, 1)
        .await
        .expect_err("over the limit");
    assert!(
        matches!(err, Error::Limit { ref field, .. } if field == "name"),
        "{err:?}"
    );
    assert_eq!(store.get("b").await.expect("get"), None);
    store
        .upsert_checked(&PodSpec::new("a", "img:2"), None, 1)
        .await
        .expect("changing an existing pod is no new pod");
}

pub async fn a_host_belongs_to_one_pod(store: &TestStore) {
    let store = store.store();
    upsert(store, &PodSpec::new("a", "img:1").with_host("a.local")).await;
    let err = store
        .upsert_checked(&PodSpec::new("b", "img:1").with_host("a.local"), None, 10)
        .await
        .expect_err("taken");
    assert!(
        matches!(err, Error::HostTaken { ref host, ref owner, .. } if host == "a.local" && owner.as_deref() == Some("a")),
        "{err:?}"
    );
    assert_eq!(store.get("b").await.expect("get"), None, "nothing written");
    // Once a lets go of it, b can take it.
    upsert(store, &PodSpec::new("a", "img:1").with_host("other.local")).await;
    upsert(store, &PodSpec::new("b", "img:1").with_host("a.local")).await;
    // Paths share a host; a second host of a pod clashes like its first.
    upsert(
        store,
        &PodSpec::new("api", "img:1").with_host("a.local").with_path("/api"),
    )
    .await;
    upsert(
        store,
        &PodSpec::new("v2", "img:1").with_host("a.local").with_path("/api/v2"),
    )
    .await;
    let clash = PodSpec::new("c", "img:1")
        .with_host("new.local")
        .with_hosts(["a.local"])
        .with_path("/api/");
    let err = store.upsert_checked(&clash, None, 10).await.expect_err("taken");
    assert!(
        matches!(err, Error::HostTaken { ref host, ref path, ref owner } if host == "a.local" && path == "/api" && owner.as_deref() == Some("api")),
        "{err:?}"
    );
    assert_eq!(store.get("c").await.expect("get"), None, "nothing written");
    let wildcard = PodSpec::new("w", "img:1").with_hosts(["*.local"]).with_path("/api");
    upsert(store, &wildcard).await;
}

pub async fn revisions_follow_template_changes_and_roll_back(store: &TestStore) {
    let store = store.store();
    let v1 = PodSpec::new("web", "img:1").with_replicas(2);
    upsert(store, &v1).await;
    upsert(store, &v1.clone().with_replicas(5)).await;
    let revs = store.revisions("web").await.expect("revisions");
    assert_eq!(revs.len(), 1, "scaling is not a revision");
    assert_eq!(revs[0].spec.replicas, 5);
    assert_eq!(revs[0].hash, v1.revision_hash());
    assert!(store.complete_revision("web", 1).await.expect("complete"));
    assert!(!store.complete_revision("web", 1).await.expect("only once"));
    let v2 = v1.clone().with_replicas(5).with_image("img:2");
    upsert(store, &v2).await;
    assert_eq!(store.get("web").await.expect("get").expect("pod").rollout.number, 2);
    let good = store
        .fail_and_roll_back("web", 2, "ProgressDeadlineExceeded", "no")
        .await
        .expect("rollback");
    assert_eq!(good.map(|r| r.number), Some(1));
    let pod = store.get("web").await.expect("get").expect("pod");
    assert_eq!(
        (pod.spec.image.as_str(), pod.spec.replicas, pod.generation),
        ("img:1", 5, 4)
    );
    assert_eq!(
        (
            pod.rollout.number,
            pod.rollout.outcome.map(|o| o.as_str()),
            pod.rollout.reason.as_deref()
        ),
        (3, Some("progressing"), Some("Rollback"))
    );
    let revs = store.revisions("web").await.expect("revisions");
    let outcomes: Vec<_> = revs.iter().map(|r| (r.number, r.outcome.as_str())).collect();
    assert_eq!(outcomes, [(1, "complete"), (2, "failed"), (3, "progressing")]);
    assert_eq!(revs[1].reason.as_deref(), Some("ProgressDeadlineExceeded"));
    assert!(revs[1].finished_at.is_some());
    assert_eq!(revs[2].reason.as_deref(), Some("Rollback"));
    // A failed revision cannot be failed twice.
    assert_eq!(store.fail_and_roll_back("web", 2, "x", "y").await.expect("again"), None);
    // A new template supersedes one still progressing.
    upsert(store, &v2.clone().with_image("img:3")).await;
    let revs = store.revisions("web").await.expect("revisions");
    assert_eq!(revs[2].outcome.as_str(), "superseded");
    assert!(store.delete_checked("web", None).await.expect("delete"));
    assert!(store.revisions("web").await.expect("revisions").is_empty());
}

pub async fn revisions_are_pruned_but_never_the_current_or_the_last_complete(store: &TestStore) {
    let store = store.store();
    // Revision 1 completes; 2..=25 never do (each superseded by the next).
    upsert(store, &PodSpec::new("web", "img:1")).await;
    assert!(store.complete_revision("web", 1).await.expect("complete"));
    for v in 2..=25 {
        upsert(store, &PodSpec::new("web", format!("img:{v}"))).await;
    }
    let revs = store.revisions("web").await.expect("revisions");
    let numbers: Vec<i64> = revs.iter().map(|r| r.number).collect();
    assert_eq!(numbers.len() as i64, MAX_REVISIONS + 1, "{numbers:?}");
    assert_eq!(numbers[0], 1, "the last complete revision is kept: {numbers:?}");
    assert_eq!(*numbers.last().expect("newest"), 25);
    assert_eq!(numbers[1], 25 - MAX_REVISIONS + 1, "{numbers:?}");
    // Rollback still finds revision 1.
    let back = store
        .fail_and_roll_back("web", 25, "ProgressDeadlineExceeded", "never ready")
        .await
        .expect("roll back");
    assert!(back.is_some(), "rolled back to the kept complete revision");
    assert_eq!(store.get("web").await.expect("get").expect("pod").spec.image, "img:1");
    // Other pods are untouched.
    upsert(store, &PodSpec::new("api", "a:1")).await;
    assert_eq!(store.revisions("api").await.expect("revisions").len(), 1);
    assert!(store.revisions("web").await.expect("revisions").len() as i64 <= MAX_REVISIONS + 2);
}

pub async fn events_are_listed_per_pod_in_order(store: &TestStore) {
    let store = store.store();
    store
        .record_event("a", "Normal", "Created", "one")
        .await
        .expect("event");
    store
        .record_event("b", "Normal", "Created", "two")
        .await
        .expect("event");
    store
        .record_event("a", "Warning", "Failed", "three")
        .await
        .expect("event");
    let events = store.events(Some("a"), 10).await.expect("events");
    let seen: Vec<_> = events
        .iter()
        .map(|e| (e.kind.as_str(), e.reason.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(seen, [("Normal", "Created", "one"), ("Warning", "Failed", "three")]);
    let newest: Vec<_> = store
        .events(None, 2)
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert_eq!(newest, ["two", "three"], "the newest, oldest first");
}

pub async fn events_resume_after_an_id(store: &TestStore) {
    let store = store.store();
    assert_eq!(store.last_event_id().await.expect("last"), 0);
    for m in ["one", "two", "three"] {
        store.record_event("a", "Normal", "Tick", m).await.expect("event");
    }
    let all = store.events_after(0, 10).await.expect("all");
    assert_eq!(all.len(), 3);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "increasing ids");
    assert_eq!(store.last_event_id().await.expect("last"), all[2].id);
    let rest: Vec<_> = store
        .events_after(all[0].id, 1)
        .await
        .expect("after")
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert_eq!(rest, ["two"], "at most limit, from after the id");
}

pub async fn event_messages_are_cut_and_the_log_is_bounded(store: &TestStore) {
    let store = store.store();
    let long = "é".repeat(10_000);
    store.record_event("a", "Warning", "Crash", &long).await.expect("event");
    let events = store.events(Some("a"), 10).await.expect("events");
    assert!(
        events[0].message.len() <= MAX_EVENT_MESSAGE_BYTES,
        "{}",
        events[0].message.len()
    );
    assert!(events[0].message.ends_with("[cut]"));
    for i in 0..(MAX_EVENTS + 250) {
        store
            .record_event("b", "Normal", "Tick", &i.to_string())
            .await
            .expect("event");
    }
    let count = store.events(None, MAX_EVENTS * 2).await.expect("events").len() as i64;
    assert!(count <= MAX_EVENTS + 100, "{count}");
    assert!(count >= MAX_EVENTS, "{count}: the newest are kept");
}

pub async fn the_store_id_is_written_once_and_gone_adoptions_are_forgotten(store: &TestStore) {
    let store = store.store();
    let facts = store.ownership_facts().await.expect("facts");
    assert_eq!(
        facts.id, None,
        "a new store has no id until its first start records one"
    );
    upsert(store, &PodSpec::new("web", "img")).await;
    let adoptions = [
        Adoption {
            id: "c1".into(),
            pod: Some("web".into()),
            previous_store: None,
            held: false,
        },
        Adoption {
            id: "c2".into(),
            pod: Some("api".into()),
            previous_store: Some("other".into()),
            held: true,
        },
    ];
    let all = HashSet::from(["c1".to_string(), "c2".to_string()]);
    store
        .record_ownership("id-1", "/data", &adoptions, &all)
        .await
        .expect("record");
    // The id is written once: a later start with another candidate keeps it.
    store.record_ownership("id-2", "/data", &[], &all).await.expect("again");
    store.release_held("api").await.expect("release");
    let mut facts = store.ownership_facts().await.expect("facts");
    facts.adopted.sort();
    assert_eq!(facts.id.as_deref(), Some("id-1"));
    assert_eq!(facts.pods, HashSet::from(["web".to_string()]));
    assert_eq!(
        facts.adopted,
        [
            ("c1".to_string(), Some("web".to_string()), false),
            ("c2".to_string(), Some("api".to_string()), false)
        ]
    );
    // c1 no longer exists on the engine: its record goes.
    store
        .record_ownership("id-1", "/data", &[], &HashSet::from(["c2".to_string()]))
        .await
        .expect("prune");
    let facts = store.ownership_facts().await.expect("facts");
    assert_eq!(facts.adopted.len(), 1);
}

pub async fn a_spec_over_the_stored_limit_is_refused_and_nothing_is_written(store: &TestStore) {
    let store = store.store();
    let mut spec = PodSpec::new("big", "img:1");
    for i in 0..9 {
        spec = spec.with_env(format!("V{i}"), "z".repeat(31 * 1024));
    }
    let err = store.upsert_checked(&spec, None, 10).await.expect_err("too large");
    assert!(
        matches!(err, Error::Spec(crate::spec::SpecError::SpecTooLarge { .. })),
        "{err:?}"
    );
    assert!(store.get("big").await.expect("get").is_none());
    assert!(store.revisions("big").await.expect("revisions").is_empty());
}

pub async fn a_backup_is_private_and_never_overwrites(store: &TestStore) {
    let store = store.store();
    use std::os::unix::fs::PermissionsExt as _;
    upsert(store, &PodSpec::new("web", "img:1").with_env("SECRET", "s3cret")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("copy");
    store.backup(&target).await.expect("backup");
    let meta = std::fs::metadata(&target).expect("the copy exists");
    assert!(meta.len() > 0);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let before = std::fs::read(&target).expect("read");
    let err = store.backup(&target).await.expect_err("exists");
    assert!(
        matches!(err, Error::AlreadyExists { ref path } if *path == target),
        "{err:?}"
    );
    assert_eq!(std::fs::read(&target).expect("read"), before, "not overwritten");
}

fn certificate(name: &str, kind: CertificateKind, not_after: i64) -> StoredCertificate {
    StoredCertificate {
        name: name.into(),
        kind,
        cert_pem: format!("CERT {name}"),
        key_pem: format!("KEY {name}"),
        hosts: vec!["a.example".into(), "*.b.example".into()],
        issuer: "CN=test".into(),
        not_before: 1,
        not_after,
        created_at: 0,
        updated_at: 0,
    }
}

pub async fn certificates_are_replaced_by_name_and_deleted(store: &TestStore) {
    let store = store.store();
    assert!(store.certificate("web").await.expect("get").is_none());
    store
        .put_certificate(&certificate("web", CertificateKind::User, 100))
        .await
        .expect("put");
    store
        .put_certificate(&certificate("acme:a.example", CertificateKind::Acme, 50))
        .await
        .expect("put acme");
    let first = store.certificate("web").await.expect("get").expect("stored");
    assert_eq!(
        (first.kind, first.key_pem.as_str(), first.hosts.len(), first.not_after),
        (CertificateKind::User, "KEY web", 2, 100)
    );
    assert!(first.created_at > 0 && first.created_at == first.updated_at);
    // Replacing keeps the creation time and changes the rest.
    let mut renewed = certificate("web", CertificateKind::User, 200);
    renewed.key_pem = "KEY 2".into();
    store.put_certificate(&renewed).await.expect("replace");
    let second = store.certificate("web").await.expect("get").expect("stored");
    assert_eq!((second.not_after, second.key_pem.as_str()), (200, "KEY 2"));
    assert_eq!(second.created_at, first.created_at);
    let names: Vec<_> = store
        .certificates()
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["acme:a.example", "web"], "listed by name");
    store.delete_user_certificate("web").await.expect("delete");
    assert!(matches!(
        store.delete_user_certificate("web").await,
        Err(Error::SecretNotFound(_))
    ));
    assert!(store.certificate("web").await.expect("get").is_none());
    // Only the user's secrets: a certificate obtained by ACME is not one.
    assert!(matches!(
        store.delete_user_certificate("acme:a.example").await,
        Err(Error::SecretNotFound(_))
    ));
}

/// Every secret check happens in the transaction of the write it guards,
/// raced concurrently over many rounds: a pod applied while its secret is
/// deleted, a replacement that no longer covers a host while a pod starts
/// using it, two creates of one name: exactly one of each pair succeeds.
pub async fn secret_checks_and_their_writes_are_one_transaction(store: &TestStore) {
    let store = store.store();
    let secret = |name: &str, host: &str| StoredCertificate {
        hosts: vec![host.to_string()],
        not_after: i64::MAX / 2,
        ..certificate(name, CertificateKind::User, 0)
    };
    let pod = |name: &str, host: &str, secret: &str| {
        PodSpec::new(name, "img:1")
            .with_host(host)
            .with_tls(dubernetes_api::Tls::Secret(secret.to_string()))
    };
    for round in 0..30 {
        // A pod applied while its secret is deleted.
        let (s, host) = (format!("del{round}"), format!("del{round}.example"));
        store
            .put_user_certificate(&secret(&s, &host), false)
            .await
            .expect("create");
        let p = pod(&format!("pdel{round}"), &host, &s);
        let (applied, deleted) = futures::join!(
            store.upsert_checked(&p, None, u32::MAX),
            store.delete_user_certificate(&s)
        );
        match (&applied, &deleted) {
            (Ok(_), Err(Error::SecretInUse { .. })) => {}
            (Err(Error::Certificate { field, .. }), Ok(())) if field == "access.tls.secret" => {}
            other => panic!("round {round}: apply and delete of its secret: {other:?}"),
        }

        // A replacement that does not cover the host, racing an apply using it.
        let (s, host) = (format!("rep{round}"), format!("rep{round}.example"));
        store
            .put_user_certificate(&secret(&s, &host), false)
            .await
            .expect("create");
        let p = pod(&format!("prep{round}"), &host, &s);
        let elsewhere = secret(&s, "elsewhere.example");
        let (applied, replaced) = futures::join!(
            store.upsert_checked(&p, None, u32::MAX),
            store.put_user_certificate(&elsewhere, true)
        );
        match (&applied, &replaced) {
            (Ok(_), Err(Error::Certificate { field, .. })) if field == "cert" => {}
            (Err(Error::Certificate { field, .. }), Ok(_)) if field == "access.tls.secret" => {}
            other => panic!("round {round}: apply and an uncovering replace: {other:?}"),
        }

        // Two creates of one name.
        let s = format!("new{round}");
        let (a, b) = (secret(&s, "a.example"), secret(&s, "b.example"));
        let (one, two) = futures::join!(
            store.put_user_certificate(&a, false),
            store.put_user_certificate(&b, false)
        );
        match (&one, &two) {
            (Ok(_), Err(Error::SecretExists(_))) | (Err(Error::SecretExists(_)), Ok(_)) => {}
            other => panic!("round {round}: two creates of one name: {other:?}"),
        }
    }
    // What the checks refuse on their own: no secret, a host not covered, an
    // expired secret for a new user (but not for a pod that keeps it).
    let expired = StoredCertificate {
        hosts: vec!["old.example".into()],
        not_after: 10,
        ..certificate("old", CertificateKind::User, 0)
    };
    let err = store
        .upsert_checked(&pod("nosecret", "x.example", "nope"), None, u32::MAX)
        .await
        .expect_err("no such secret");
    assert!(err.to_string().contains("no TLS secret"), "{err}");
    store.put_user_certificate(&expired, false).await.expect("create");
    let err = store
        .upsert_checked(&pod("uses-old", "old.example", "old"), None, u32::MAX)
        .await
        .expect_err("expired, new use");
    assert!(err.to_string().contains("expired"), "{err}");
    let err = store
        .upsert_checked(&pod("other-host", "new.example", "old"), None, u32::MAX)
        .await
        .expect_err("not covered");
    assert!(err.to_string().contains("not the pod's host"), "{err}");
}

pub async fn acme_accounts_are_kept_per_directory(store: &TestStore) {
    let store = store.store();
    let (one, two) = ("https://acme.one/dir", "https://acme.two/dir");
    assert_eq!(store.acme_account(one).await.expect("get"), None);
    store.put_acme_account(one, "{\"a\":1}").await.expect("put");
    store.put_acme_account(two, "{\"b\":2}").await.expect("put");
    store.put_acme_account(one, "{\"a\":3}").await.expect("replace");
    assert_eq!(
        store.acme_account(one).await.expect("get").as_deref(),
        Some("{\"a\":3}")
    );
    assert_eq!(
        store.acme_account(two).await.expect("get").as_deref(),
        Some("{\"b\":2}")
    );
}
