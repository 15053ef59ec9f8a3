//! The controller's ingress under a paused clock: a dying ingress, endpoint
//! files through the archive API or changed by hand, a route nginx rejects,
//! and the TCP listeners of `expose`.

use super::*;

#[tokio::test(start_paused = true)]
async fn a_dying_ingress_is_replaced_and_routes_again() {
    let fake = engine();
    let d = start(&fake, None).await;
    d.apply(web(V1, 2, strategy(1, 0))).await.expect("apply");
    d.wait_ready("web", WAIT).await.expect("lands");
    let ingress = fake.ids("ingress", None, true);
    assert_eq!(ingress.len(), 1);
    fake.crash(&ingress[0], 1);
    until("a new ingress runs", async || {
        let now = fake.ids("ingress", None, true);
        now.len() == 1 && now != ingress
    })
    .await;
    fake.clear_history();
    until("routes are served again", async || {
        d.get("web").await.is_ok_and(|p| p.status.ready_replicas == 2)
    })
    .await;
    assert_eq!(d.diagnostics().ingress_error(), None);
    // Scaling changes only the endpoint files: no `nginx -t`, no reload.
    let reloads = d.diagnostics().ingress_reloads();
    let updates = d.diagnostics().ingress_endpoint_updates();
    d.apply(web(V1, 3, strategy(1, 0))).await.expect("scale up");
    d.wait_ready("web", WAIT).await.expect("scaled up");
    assert_eq!(
        d.diagnostics().ingress_reloads(),
        reloads,
        "no reload for a new replica"
    );
    assert!(d.diagnostics().ingress_endpoint_updates() > updates);
    // A config nginx rejects (a new host) is never made live: the running one stays.
    fake.reject_configs(true);
    let mut api = PodSpec::new("api", V1).with_replicas(1).with_host("api.local");
    api.update = Some(strategy(1, 0));
    d.apply(api).await.expect("apply api");
    until("the rejection is reported", async || {
        d.diagnostics().ingress_error().is_some()
    })
    .await;
    assert_eq!(d.diagnostics().ingress_reloads(), reloads, "nothing was reloaded");
    fake.reject_configs(false);
    d.wait_ready("api", WAIT).await.expect("lands once nginx accepts");
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn endpoint_files_go_through_the_archive_api_when_the_ingress_does_not_see_the_directory() {
    let fake = engine();
    // A local engine whose containers never see this process's directory
    // (this server runs in a container of its own): the check fails, and
    // the endpoint files go through the archive API as before.
    fake.claim_local(true);
    let dir = tempfile::tempdir().expect("tempdir");
    let ingress = IngressSettings::new(NGINX, "127.0.0.1:0".parse().expect("address"))
        .with_endpoints_dir(dir.path().join("endpoints"));
    let d = start_in_memory(&fake, ingress, Duration::from_secs(30)).await;
    d.apply(web(V1, 2, strategy(1, 0))).await.expect("apply");
    d.wait_ready("web", WAIT).await.expect("lands");
    assert!(
        !d.diagnostics().ingress_endpoints_bound(),
        "the check saw no marker, so nothing is bound"
    );
    assert_eq!(
        fake.routed_now("web"),
        2,
        "routed through files written by the archive API"
    );
    assert!(dir.path().join("endpoints").join(".dubernetes-check").exists());
    assert!(
        !dir.path().join("endpoints").join("web.a").exists(),
        "nothing routes from the unseen directory"
    );
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn endpoint_files_changed_by_hand_are_rewritten_at_the_resync() {
    let fake = engine();
    let ingress = IngressSettings::new(NGINX, "127.0.0.1:0".parse().expect("address"));
    let d = start_in_memory(&fake, ingress, Duration::from_secs(10)).await;
    d.apply(web(V1, 2, strategy(1, 0))).await.expect("apply");
    d.wait_ready("web", WAIT).await.expect("lands");
    let ingress = fake.ids("ingress", None, true);
    let updates = d.diagnostics().ingress_endpoint_updates();
    let reloads = d.diagnostics().ingress_reloads();
    for slot in ['a', 'b'] {
        let path = format!("/etc/{}", crate::ingress::endpoints_slot("web", slot));
        assert!(fake.file(&ingress[0], &path).is_some(), "{path} was written");
        fake.overwrite_file(
            &ingress[0],
            &path,
            b"dubernetes-endpoints 1 99999999999999999\nend 99999999999999999\n",
        );
    }
    assert_eq!(fake.routed_now("web"), 0, "the edit routes to nothing");
    until("the resync rewrites the files", async || fake.routed_now("web") == 2).await;
    assert!(d.diagnostics().ingress_endpoint_updates() > updates);
    assert_eq!(
        d.diagnostics().ingress_reloads(),
        reloads,
        "endpoint files only: no reload"
    );
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_route_nginx_rejects_is_left_out_and_the_others_still_change() {
    let fake = engine();
    let d = start(&fake, None).await;
    d.apply(web(V1, 1, strategy(1, 0))).await.expect("apply web");
    landed(&d).await;
    fake.reject_host(Some("bad.local"));
    let mut bad = PodSpec::new("bad", V1).with_replicas(1).with_host("bad.local");
    bad.update = Some(strategy(1, 0));
    d.apply(bad).await.expect("apply bad");
    until("bad is reported as IngressRejected", async || {
        d.get("bad")
            .await
            .is_ok_and(|p| p.status.reason.as_deref() == Some("IngressRejected"))
    })
    .await;
    assert_eq!(d.diagnostics().ingress_rejections().keys().collect::<Vec<_>>(), ["bad"]);
    // The other pod's replica changes go on, by endpoint files only.
    let reloads = d.diagnostics().ingress_reloads();
    d.apply(web(V1, 3, strategy(1, 0))).await.expect("scale web");
    until("web scaled and routed", async || {
        d.get("web").await.is_ok_and(|p| p.status.ready_replicas == 3)
    })
    .await;
    assert_eq!(fake.max_routable("bad"), Some(0), "bad was never routed");
    assert_eq!(
        d.diagnostics().ingress_reloads(),
        reloads,
        "a replica change reloaded nginx"
    );
    // Once nginx accepts it (the next resync tries again), bad is routed.
    fake.reject_host(None);
    d.wait_ready("bad", WAIT)
        .await
        .expect("bad lands once nginx accepts it");
    d.shutdown().await;
}

pub(super) fn listeners(fake: &FakeEngine) -> std::collections::BTreeMap<String, String> {
    fake.ids(crate::ingress::ROLE_LISTENER, None, true)
        .into_iter()
        .filter_map(|id| Some((fake.label(&id, "io.dubernetes.listen")?, id)))
        .collect()
}

pub(super) fn exposing(name: &str, listens: &[&str]) -> PodSpec {
    listens.iter().fold(PodSpec::new(name, V1).with_replicas(1), |spec, l| {
        spec.with_expose(crate::spec::Expose::new(80, *l))
    })
}

#[tokio::test(start_paused = true)]
async fn an_expose_change_replaces_only_its_own_listener() {
    let fake = engine();
    let d = start(&fake, None).await;
    d.apply(web(V1, 1, strategy(1, 0))).await.expect("apply web");
    d.apply(exposing("a", &["127.0.0.1:15001"])).await.expect("apply a");
    d.apply(exposing("b", &["127.0.0.1:15002"])).await.expect("apply b");
    for pod in ["web", "a", "b"] {
        d.wait_ready(pod, WAIT).await.expect("lands");
    }
    until("both listeners run", async || listeners(&fake).len() == 2).await;
    let ingress = fake.ids("ingress", None, true);
    let a = listeners(&fake)["127.0.0.1:15001"].clone();
    let reloads = d.diagnostics().ingress_reloads();
    // b moves, then gets a second entry, then none.
    for (step, want) in [
        (vec!["127.0.0.1:15003"], vec!["127.0.0.1:15001", "127.0.0.1:15003"]),
        (
            vec!["127.0.0.1:15003", "[::1]:15004"],
            vec!["127.0.0.1:15001", "127.0.0.1:15003", "[::1]:15004"],
        ),
        (vec![], vec!["127.0.0.1:15001"]),
    ] {
        let mut spec = exposing("b", &step);
        spec.replicas = 1;
        d.apply(spec).await.expect("apply b");
        until(&format!("b's listeners are {step:?}"), async || {
            listeners(&fake).keys().map(String::as_str).collect::<Vec<_>>() == want
        })
        .await;
        assert_eq!(
            fake.ids("ingress", None, true),
            ingress,
            "the HTTP ingress was replaced"
        );
        assert_eq!(listeners(&fake)["127.0.0.1:15001"], a, "a's listener was replaced");
    }
    assert_eq!(d.diagnostics().ingress_reloads(), reloads, "nginx reloaded");
    // a's replicas are in its listener's endpoint files.
    let a_replica = fake.ids("replica", Some("a"), true);
    assert_eq!(a_replica.len(), 1);
    let files: Vec<String> = ['a', 'b']
        .iter()
        .filter_map(|slot| fake.file(&a, &format!("/etc/dubernetes/endpoints/tcp_15001.{slot}")))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect();
    let servers = crate::ingress::latest_endpoints(files.iter().map(String::as_str)).expect("a complete file");
    assert_eq!(servers.len(), 1, "{servers:?}");
    assert!(servers[0].ends_with(":80"), "{servers:?}");
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_listener_that_cannot_start_is_reported_and_retried() {
    let fake = engine();
    let d = start(&fake, None).await;
    fake.take_port(15010, true);
    d.apply(exposing("db", &["127.0.0.1:15010"])).await.expect("apply");
    until("ListenerFailed", async || {
        d.get("db")
            .await
            .is_ok_and(|p| p.status.reason.as_deref() == Some("ListenerFailed"))
    })
    .await;
    let pod = d.get("db").await.expect("db");
    assert!(
        pod.status
            .message
            .as_deref()
            .is_some_and(|m| m.contains("127.0.0.1:15010") && m.contains("address already in use")),
        "{:?}",
        pod.status.message
    );
    // Tried again with back-off (1 s, 2 s, 4 s, ...), one event for all tries.
    let starts = fake.calls("start");
    tokio::time::sleep(Duration::from_secs(8)).await;
    let tries = fake.calls("start") - starts;
    assert!((2..=5).contains(&tries), "{tries} tries in 8 s");
    let failed = d.events(Some("db"), 500).await.expect("events");
    assert_eq!(failed.iter().filter(|e| e.reason == "ListenerFailed").count(), 1);
    assert!(listeners(&fake).is_empty());
    fake.take_port(15010, false);
    until("the listener runs", async || listeners(&fake).len() == 1).await;
    until("the status clears", async || {
        d.get("db").await.is_ok_and(|p| p.status.reason.is_none())
    })
    .await;
    let events = d.events(Some("db"), 500).await.expect("events");
    assert!(events.iter().any(|e| e.reason == "ListenerStarted"), "{events:?}");
    // A listener container that dies is replaced.
    let id = listeners(&fake)["127.0.0.1:15010"].clone();
    fake.crash(&id, 1);
    until("a new listener runs", async || {
        listeners(&fake).get("127.0.0.1:15010").is_some_and(|now| *now != id)
    })
    .await;
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn listener_endpoint_files_changed_by_hand_are_rewritten_at_the_resync() {
    let fake = engine();
    let ingress = IngressSettings::new(NGINX, "127.0.0.1:0".parse().expect("address"));
    let d = start_in_memory(&fake, ingress, Duration::from_secs(10)).await;
    d.apply(exposing("db", &["127.0.0.1:15030"])).await.expect("apply");
    d.wait_ready("db", WAIT).await.expect("lands");
    until("db's listener runs", async || listeners(&fake).len() == 1).await;
    let id = listeners(&fake)["127.0.0.1:15030"].clone();
    let read = || {
        let slots: Vec<String> = ['a', 'b']
            .iter()
            .filter_map(|slot| fake.file(&id, &format!("/etc/dubernetes/endpoints/tcp_15030.{slot}")))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect();
        crate::ingress::latest_endpoints(slots.iter().map(String::as_str))
    };
    until("the replica is in the listener's files", async || {
        read().is_some_and(|s| s.len() == 1)
    })
    .await;
    for slot in ['a', 'b'] {
        let path = format!("/etc/dubernetes/endpoints/tcp_15030.{slot}");
        fake.overwrite_file(&id, &path, b"changed by hand\n");
    }
    assert_eq!(read(), None, "changed by hand");
    until("the resync rewrites them", async || {
        read().is_some_and(|s| s.len() == 1)
    })
    .await;
    assert_eq!(listeners(&fake)["127.0.0.1:15030"], id, "the same container");
    d.shutdown().await;
}
