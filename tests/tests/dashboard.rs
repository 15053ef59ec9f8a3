//! The dashboard in a real browser (headless Chromium from Debian's packages,
//! driven through chromedriver): sign in with `dubectl dashboard
//! --print-url`, see a pod, then its replicas converge after a scale, then a
//! new event, all without a reload. scripts/test.sh installs `chromium` and
//! `chromium-driver`. `DUBERNETES_DASHBOARD_SCREENSHOT=docs/dashboard.png`
//! writes the screenshot the README shows.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dubernetes_tests::{TestServer, containers, docker, free_port, stdout};
use fantoccini::{ClientBuilder, Locator};

const T: Duration = Duration::from_secs(60);

/// A chromedriver process on a free port; killed when dropped.
struct ChromeDriver {
    child: Child,
    port: u16,
}

impl ChromeDriver {
    fn start() -> ChromeDriver {
        let port = free_port();
        let mut child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run chromedriver ({e}); install chromium and chromium-driver (scripts/test.sh does)")
            });
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            // The port was free a moment ago only: one that lost it exits.
            if let Ok(Some(status)) = child.try_wait() {
                panic!("chromedriver exited ({status}) before it listened on {port}");
            }
            assert!(Instant::now() < deadline, "chromedriver did not listen on {port}");
            #[expect(
                clippy::disallowed_methods,
                reason = "a synchronous poll of chromedriver's port, bounded by its deadline"
            )]
            std::thread::sleep(Duration::from_millis(50));
        }
        ChromeDriver { child, port }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn row(pod: &str, ready: u32, desired: u32) -> String {
    format!("tr[data-pod=\"{pod}\"][data-ready=\"{ready}\"][data-desired=\"{desired}\"]")
}

#[tokio::test]
async fn the_dashboard_shows_pods_converging_and_events_live() {
    let server = TestServer::start("dashboard").await;
    let yaml =
        |n: u32| format!("name: web\nimage: dubernetes/whoami:v1\nreplicas: {n}\naccess: {{host: web.dash.local}}\n");
    assert_eq!(server.put_yaml("web", &yaml(1)).await.0, 201);
    server.wait_converged("web", T).await;

    // The sign-in link: a single-use code, never the token.
    let out = server.dubectl(&["dashboard", "--print-url"]);
    assert!(out.status.success(), "{out:?}");
    let link = stdout(&out).trim().to_string();
    assert!(
        link.starts_with(&format!("{}/dashboard/login?code=", server.url)),
        "{link}"
    );
    assert!(!link.contains(&server.token), "the token is in the link");

    let driver = ChromeDriver::start();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,860", "--no-first-run", "--disable-extensions"]
        }),
    );
    let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a headless Chromium session");

    browser.goto(&link).await.expect("open the link");
    // Redirected to the clean URL, signed in by an HttpOnly cookie.
    let url = browser.current_url().await.expect("url");
    assert_eq!(url.as_str(), format!("{}/dashboard/", server.url));
    assert_eq!(browser.execute("return document.cookie", vec![]).await.expect("js"), "");

    // The pod, as the watch API reports it.
    browser
        .wait()
        .at_most(T)
        .for_element(Locator::Css(&row("web", 1, 1)))
        .await
        .expect("the pod shows 1 of 1 ready");
    // A mark that a reload would wipe.
    browser
        .execute("window.__noReload = 19; return 1", vec![])
        .await
        .expect("js");

    // Scale: the replicas converge on the page, live.
    assert_eq!(server.put_yaml("web", &yaml(3)).await.0, 200);
    browser
        .wait()
        .at_most(T)
        .for_element(Locator::Css(&row("web", 3, 3)))
        .await
        .expect("the pod shows 3 of 3 ready after the scale");
    let ready = browser
        .find_all(Locator::Css("tr[data-pod=\"web\"] .replica[data-ready=\"true\"]"))
        .await
        .expect("replicas");
    assert_eq!(ready.len(), 3);

    // A new event: a replica killed from outside, replaced.
    let docker = docker().await;
    let (victim, _, _) = containers(&docker, &server.instance, Some("web")).await.remove(0);
    docker
        .kill_container(&victim, None::<bollard::query_parameters::KillContainerOptions>)
        .await
        .expect("docker kill");
    browser
        .wait()
        .at_most(T)
        .for_element(Locator::Css("#events li[data-pod=\"web\"][data-reason=\"Killed\"]"))
        .await
        .expect("the Killed event shows");
    browser
        .wait()
        .at_most(T)
        .for_element(Locator::Css(&row("web", 3, 3)))
        .await
        .expect("back to 3 of 3");
    let mark = browser.execute("return window.__noReload", vec![]).await.expect("js");
    assert_eq!(mark, 19, "the page was reloaded");

    // The log tail of the pod, followed.
    browser
        .find(Locator::Css("tr[data-pod=\"web\"] td.name"))
        .await
        .expect("pod name")
        .click()
        .await
        .expect("click");
    let logs = browser.find(Locator::Id("logs")).await.expect("logs");
    let deadline = Instant::now() + T;
    while !logs.text().await.unwrap_or_default().contains("listening") {
        assert!(Instant::now() < deadline, "no log lines in the tail");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let png = browser.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    if let Ok(path) = std::env::var("DUBERNETES_DASHBOARD_SCREENSHOT") {
        std::fs::write(&path, &png).expect("write the screenshot");
    }
    browser.close().await.expect("close the browser");

    // The code worked once.
    let again = server.anonymous.get(&link).send().await.expect("GET");
    assert_eq!(again.status(), 401);
    // The page's own headers: a strict CSP, no CORS.
    let page = server
        .anonymous
        .get(format!("{}/dashboard/", server.url))
        .header("origin", "http://evil.example")
        .send()
        .await
        .expect("GET");
    let csp = page
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert!(page.headers().get("access-control-allow-origin").is_none());
}
