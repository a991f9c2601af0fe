//! The browser follows the save: real `hotswap serve`, real cargo builds of the HTML example
//! (`examples/site`) and of an app behind tower-http's `CompressionLayer`
//! (`tests/fixtures/compressed`), real HTTP, and real headless Chromium driven by playwright-core
//! (`tests/src/browser.rs`). Pages reload after a handler change, restyle in place after a
//! stylesheet save (no build), show the compiler's errors and refused swaps, and notice when the
//! daemon stops and comes back; responses that are not pages pass byte for byte.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hotswap_tests::artifacts::{cargo_target_dir, repository_root};
use hotswap_tests::binaries::{App, Daemon};
use hotswap_tests::browser::{Browser, epoch_millis};

/// A handler change must show in the page within this long of the save (issue 14).
const HANDLER_CHANGE_LIMIT_MS: f64 = 1000.0;
/// What hotswap may add to cargo's build of the change: the `hotswap save` message, the
/// debounce, the swap, the event to the page and its reload.
const HOTSWAP_SHARE_MS: f64 = 600.0;
/// A stylesheet save must restyle the page within this long.
const STYLESHEET_LIMIT_MS: f64 = 200.0;
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

const HEADLINE: &str = "const HEADLINE: &str = \"Welcome to the hotswap site\";";

/// Where screenshots go (kept after the run, like the VS Code tests' artifacts).
fn artifacts() -> PathBuf {
    let directory = cargo_target_dir().join("hotswap-tests-artifacts");
    std::fs::create_dir_all(&directory).unwrap();
    directory
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The example site as an app of its own, on a fixed port (so that a page outlives a restart of
/// the daemon).
fn site_app(name: &str, browser_section: &str) -> (App, u16) {
    let sections = format!("[swap]\nsmoke_path = \"/health\"\n\n[browser]\n{browser_section}\n");
    let app = App::copy_of_crate(&repository_root().join("examples/site"), name, &sections);
    let port = free_port();
    let config = app.path("hotswap.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("127.0.0.1:0", &format!("127.0.0.1:{port}"))).unwrap();
    (app, port)
}

fn save(app: &App, relative: &str) {
    let output = app.hotswap(&["save", relative]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

fn edit(app: &App, relative: &str, old: &str, new: &str) {
    let path = app.path(relative);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(old), "{relative} does not contain {old:?}");
    std::fs::write(&path, text.replacen(old, new, 1)).unwrap();
}

/// The line (from 1) of `src/lib.rs` that contains `text`.
fn line_of(app: &App, text: &str) -> usize {
    let source = std::fs::read_to_string(app.path("src/lib.rs")).unwrap();
    source.lines().position(|line| line.contains(text)).expect("the text is in the file") + 1
}

/// When the page (reloaded) first painted, by the page's clock: the moment the new content
/// became visible.
pub const PAINTED_AT: &str = hotswap_tests::browser::PAINTED_AT;
const CONNECTED: &str = "window.__hotswapLiveReload && window.__hotswapLiveReload.connected";
const OVERLAY_TEXT: &str = "(() => { const o = document.querySelector('hotswap-overlay'); return o ? o.shadowRoot.textContent : ''; })()";

/// Makes the page believe it was hidden or shown (a tab switch).
fn visibility(state: &str) -> String {
    format!(
        "Object.defineProperty(document, 'visibilityState', {{ configurable: true, get: () => '{state}' }}); \
         document.dispatchEvent(new Event('visibilitychange')); 1"
    )
}

/// Waits until the tab has loaded `count` times (the `load` event comes after the content shows),
/// and checks it did not load more often.
async fn assert_loads(browser: &mut Browser, tab: &str, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let loads = browser.loads(tab).await.unwrap();
        if loads >= count {
            assert_eq!(loads, count, "tab {tab} loaded {loads} times");
            return;
        }
        assert!(Instant::now() < deadline, "tab {tab} loaded {loads} times, not {count}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn builds_started(daemon: &Daemon) -> u64 {
    daemon.status().await.last_build.map_or(0, |build| build.build)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_follow_handler_changes_stylesheets_errors_and_the_daemon() {
    let (app, port) = site_app("live-site", "runtime_templates = [\"templates/*.html\"]");
    let mut daemon = app.serve().await;
    daemon.wait_for_generation(1).await;
    let url = format!("http://127.0.0.1:{port}/");
    let mut browser = Browser::launch().await.unwrap();
    browser.open("a", &url).await.unwrap();
    browser.open("b", &url).await.unwrap();
    for tab in ["a", "b"] {
        browser.wait_for(tab, CONNECTED, STEP_TIMEOUT).await.unwrap();
    }

    // A handler change: both tabs show the new headline by themselves, within a second. The
    // machine is shared: of up to three saves, one must make it.
    let mut timings = Vec::new();
    let mut previous = HEADLINE.to_owned();
    for attempt in 1..=3 {
        browser.evaluate("a", "window.marker = 'set before the save'").await.unwrap();
        let headline = format!("Saved once ({attempt})");
        let line = format!("const HEADLINE: &str = \"{headline}\";");
        edit(&app, "src/lib.rs", &previous, &line);
        previous = line;
        let saved_at = epoch_millis();
        save(&app, "src/lib.rs");
        let shows = format!(
            "document.getElementById('headline').textContent === '{headline}' && {PAINTED_AT}"
        );
        let shown_at = browser.wait_for("a", &shows, STEP_TIMEOUT).await.unwrap().as_f64().unwrap();
        browser.wait_for("b", &shows, STEP_TIMEOUT).await.unwrap();
        let handler_ms = shown_at - saved_at;
        let build_ms = daemon.status().await.last_build.expect("a build").duration_ms;
        eprintln!(
            "handler change: save → new text in the page in {handler_ms:.0} ms, of which cargo built for {build_ms:.0} ms"
        );
        assert_loads(&mut browser, "a", 1 + attempt).await;
        assert_eq!(browser.evaluate("a", "window.marker === undefined").await.unwrap(), true);
        browser.wait_for("a", CONNECTED, STEP_TIMEOUT).await.unwrap();
        browser.wait_for("b", CONNECTED, STEP_TIMEOUT).await.unwrap();
        timings.push((handler_ms, build_ms));
        // Within a second of the save; on a machine so busy that cargo alone takes longer than
        // HOTSWAP_SHARE_MS to build the one-line change, hotswap's share (the save message, the
        // debounce, the swap, the event to the page, its reload) must stay within that.
        if handler_ms < HANDLER_CHANGE_LIMIT_MS.max(build_ms + HOTSWAP_SHARE_MS) {
            break;
        }
    }
    let &(handler_ms, build_ms) = timings.last().unwrap();
    assert!(
        handler_ms < HANDLER_CHANGE_LIMIT_MS.max(build_ms + HOTSWAP_SHARE_MS),
        "the page showed none of three handler changes in time (ms after the save, of which cargo): {timings:?}:\n{}",
        daemon.log()
    );
    let headline =
        previous.trim_start_matches("const HEADLINE: &str = \"").trim_end_matches("\";").to_owned();
    let loads = 1 + timings.len() as u64;
    browser.wait_for("a", CONNECTED, STEP_TIMEOUT).await.unwrap();

    // A stylesheet save: restyled in place (the page's JavaScript state and form input stay),
    // within 200 ms, and no build starts.
    browser
        .evaluate("a", "window.marker = 'kept'; document.getElementById('note').value = 'typed'; 1")
        .await
        .unwrap();
    let color = "getComputedStyle(document.getElementById('headline')).color";
    assert_eq!(browser.evaluate("a", color).await.unwrap(), "rgb(37, 99, 235)");
    let builds = builds_started(&daemon).await;
    // Tab b is hidden meanwhile: it lets go of its connection, and catches up when shown.
    browser.evaluate("b", &visibility("hidden")).await.unwrap();
    browser
        .wait_for(
            "b",
            "window.__hotswapLiveReload.suspended && !window.__hotswapLiveReload.connected",
            STEP_TIMEOUT,
        )
        .await
        .unwrap();
    edit(&app, "assets/site.css", "--accent: rgb(37, 99, 235);", "--accent: rgb(200, 30, 40);");
    let saved_at = epoch_millis();
    save(&app, "assets/site.css");
    let restyled = format!("{color} === 'rgb(200, 30, 40)' && Date.now()");
    let restyled_at =
        browser.wait_for("a", &restyled, STEP_TIMEOUT).await.unwrap().as_f64().unwrap();
    let stylesheet_ms = restyled_at - saved_at;
    eprintln!("stylesheet save: save → new style in the page in {stylesheet_ms:.0} ms");
    assert!(
        stylesheet_ms < STYLESHEET_LIMIT_MS,
        "the page was restyled {stylesheet_ms:.0} ms after the save"
    );
    assert_eq!(browser.evaluate("b", color).await.unwrap(), "rgb(37, 99, 235)", "b was hidden");
    browser.evaluate("b", &visibility("visible")).await.unwrap();
    browser.wait_for("b", &restyled, STEP_TIMEOUT).await.unwrap();
    browser.wait_for("b", CONNECTED, STEP_TIMEOUT).await.unwrap();
    assert_loads(&mut browser, "b", loads).await;
    assert_eq!(browser.evaluate("a", "window.marker").await.unwrap(), "kept", "no reload");
    assert_eq!(
        browser.evaluate("a", "document.getElementById('note').value").await.unwrap(),
        "typed"
    );
    assert_loads(&mut browser, "a", loads).await;
    assert_eq!(
        browser
            .evaluate("a", "document.querySelectorAll('link[rel=stylesheet]').length")
            .await
            .unwrap(),
        1,
        "the old <link> is gone"
    );
    let status = daemon.status().await;
    assert_eq!(builds_started(&daemon).await, builds, "a stylesheet save starts no build");
    assert!(!status.building);

    // A template read at run time: the page that shows it reloads, with no build.
    browser.open("about", &format!("{url}about")).await.unwrap();
    browser.wait_for("about", CONNECTED, STEP_TIMEOUT).await.unwrap();
    edit(
        &app,
        "templates/about.html",
        "<h1 id=\"headline\">About</h1>",
        "<h1 id=\"headline\">About, saved</h1>",
    );
    save(&app, "templates/about.html");
    browser
        .wait_for(
            "about",
            "document.getElementById('headline').textContent === 'About, saved'",
            STEP_TIMEOUT,
        )
        .await
        .unwrap();
    assert_loads(&mut browser, "about", 2).await;
    assert_eq!(builds_started(&daemon).await, builds, "a template save starts no build");
    browser.close("about").await.unwrap();

    // A broken build: the overlay names the file and line, over the page that keeps serving.
    edit(&app, "src/lib.rs", "let count = self.visits", "let count: String = self.visits");
    let broken_line = line_of(&app, "let count: String");
    save(&app, "src/lib.rs");
    let location = format!("src/lib.rs:{broken_line}:");
    let overlay = browser
        .wait_for(
            "a",
            &format!("{OVERLAY_TEXT}.includes('{location}') && {OVERLAY_TEXT}"),
            STEP_TIMEOUT,
        )
        .await
        .unwrap();
    let overlay = overlay.as_str().unwrap().to_owned();
    assert!(overlay.contains("Build failed"), "{overlay}");
    assert!(overlay.contains("mismatched types"), "the compiler's message: {overlay}");
    assert!(overlay.contains("let count: String"), "the rendered snippet: {overlay}");
    browser.screenshot("a", &artifacts().join("live-reload-overlay.png")).await.unwrap();
    // A page opened now shows it at once.
    browser.open("late", &url).await.unwrap();
    browser
        .wait_for("late", &format!("{OVERLAY_TEXT}.includes('{location}')"), STEP_TIMEOUT)
        .await
        .unwrap();
    browser.close("late").await.unwrap();

    // Fixed: the overlay goes and the new content shows.
    edit(&app, "src/lib.rs", "let count: String = self.visits", "let count = self.visits");
    edit(&app, "src/lib.rs", &format!("\"{headline}\""), "\"Fixed after the error\"");
    save(&app, "src/lib.rs");
    let fixed = "document.getElementById('headline').textContent === 'Fixed after the error' && !document.querySelector('hotswap-overlay')";
    browser.wait_for("a", fixed, STEP_TIMEOUT).await.unwrap();
    browser.wait_for("b", fixed, STEP_TIMEOUT).await.unwrap();

    // A refused swap (the smoke request fails) shows its stage and reason.
    browser.wait_for("a", CONNECTED, STEP_TIMEOUT).await.unwrap();
    edit(
        &app,
        "src/lib.rs",
        "\"/health\" => answer(",
        "\"/health\" => status(StatusCode::INTERNAL_SERVER_ERROR, \"sick\\n\"),\n            \"/healthy\" => answer(",
    );
    save(&app, "src/lib.rs");
    let refused = browser
        .wait_for(
            "a",
            &format!("{OVERLAY_TEXT}.includes('smoke stage') && {OVERLAY_TEXT}"),
            STEP_TIMEOUT,
        )
        .await
        .unwrap();
    assert!(refused.as_str().unwrap().contains("refused"), "{refused}");
    edit(
        &app,
        "src/lib.rs",
        "\"/health\" => status(StatusCode::INTERNAL_SERVER_ERROR, \"sick\\n\"),\n            \"/healthy\" => answer(",
        "\"/health\" => answer(",
    );
    edit(&app, "src/lib.rs", "\"Fixed after the error\"", "\"Healthy again\"");
    save(&app, "src/lib.rs");
    browser
        .wait_for("a", "document.getElementById('headline').textContent === 'Healthy again' && !document.querySelector('hotswap-overlay')", STEP_TIMEOUT)
        .await
        .unwrap();
    browser.wait_for("a", CONNECTED, STEP_TIMEOUT).await.unwrap();

    // The daemon stops: the page says so once, retries with backoff without flooding the
    // console, and reloads when a daemon serves again.
    let console_before = browser.console("a").await.unwrap().len();
    let stopped = app.hotswap(&["stop"]);
    assert!(stopped.status.success(), "{}", String::from_utf8_lossy(&stopped.stderr));
    daemon.wait_for_exit(Duration::from_secs(60));
    browser
        .wait_for("a", "!!document.querySelector('hotswap-notice')", STEP_TIMEOUT)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let console: Vec<_> =
        browser.console("a").await.unwrap().into_iter().skip(console_before).collect();
    let told: Vec<_> =
        console.iter().filter(|message| message.text.starts_with("hotswap:")).collect();
    assert_eq!(told.len(), 1, "said once: {console:#?}");
    assert!(told[0].text.contains("does not answer"), "{console:#?}");
    // Each retry costs the browser's own line about a refused connection: with the backoff
    // (0.5, 1, 2, 4 s) that is a handful in 6 s, not one every few milliseconds.
    assert!(console.len() <= 8, "the console is flooded: {console:#?}");
    let loads_before = browser.loads("a").await.unwrap();
    let daemon = app.serve().await;
    daemon.wait_for_generation(1).await;
    browser
        .wait_for(
            "a",
            &format!("{CONNECTED} && !document.querySelector('hotswap-notice')"),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert!(browser.loads("a").await.unwrap() > loads_before, "reloaded from the new daemon");
    assert_eq!(
        browser.evaluate("a", "document.getElementById('headline').textContent").await.unwrap(),
        "Healthy again"
    );
    let noise: Vec<_> = browser
        .console("b")
        .await
        .unwrap()
        .into_iter()
        .filter(|message| message.kind == "pageerror")
        .collect();
    assert!(noise.is_empty(), "the script threw: {noise:#?}");
    browser.quit().await;
    drop(daemon);
}

/// A whole HTTP/1.1 exchange on a new connection (`Connection: close`): status line, headers
/// (without `date`) and the body's bytes, as they came.
fn exchange(address: SocketAddr, request: &str) -> (String, Vec<(String, String)>, Vec<u8>) {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.write_all(request.replace('\n', "\r\n").as_bytes()).unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    let end = bytes.windows(4).position(|window| window == b"\r\n\r\n").expect("a head") + 4;
    let head = String::from_utf8(bytes[..end].to_vec()).unwrap();
    let mut lines = head.split("\r\n").filter(|line| !line.is_empty());
    let status = lines.next().unwrap().to_owned();
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.to_ascii_lowercase(), value.trim().to_owned())
        })
        .filter(|(name, _)| name != "date")
        .collect();
    (status, headers, bytes[end..].to_vec())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
}

/// The bytes of a `Transfer-Encoding: chunked` body.
fn dechunked(mut body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    loop {
        let line_end = body.windows(2).position(|window| window == b"\r\n").expect("a chunk size");
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap().trim(), 16)
                .unwrap();
        if size == 0 {
            return bytes;
        }
        bytes.extend_from_slice(&body[line_end + 2..line_end + 2 + size]);
        body = &body[line_end + 2 + size + 2..];
    }
}

/// What a browser sends for a page it navigates to.
fn navigation(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\nHost: localhost\nAccept: text/html,application/xhtml+xml,*/*;q=0.8\nAccept-Encoding: gzip, deflate\nSec-Fetch-Dest: document\nSec-Fetch-Mode: navigate\nConnection: close\n\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_are_not_pages_pass_byte_for_byte() {
    let (app, _port) = site_app("bytes-site", "live_reload = false");
    let requests = [
        "GET /api/visits HTTP/1.1\nHost: localhost\nAccept: application/json\nConnection: close\n\n".to_owned(),
        "GET /robots.txt HTTP/1.1\nHost: localhost\nAccept: text/plain\nConnection: close\n\n".to_owned(),
        "GET /api/bytes HTTP/1.1\nHost: localhost\nAccept: */*\nAccept-Encoding: gzip\nConnection: close\n\n".to_owned(),
        "GET /assets/site.css HTTP/1.1\nHost: localhost\nAccept: text/css,*/*;q=0.1\nSec-Fetch-Dest: style\nConnection: close\n\n".to_owned(),
        // A page, but not a navigation: HEAD, and a fetch() (htmx) that accepts HTML.
        navigation("/").replacen("GET", "HEAD", 1),
        "GET / HTTP/1.1\nHost: localhost\nAccept: text/html\nSec-Fetch-Dest: empty\nConnection: close\n\n".to_owned(),
    ];
    let off = {
        let daemon = app.serve().await;
        daemon.wait_for_generation(1).await;
        let address = daemon.address();
        let mut answers: Vec<_> =
            requests.iter().map(|request| exchange(address, request)).collect();
        answers.push(exchange(address, &navigation("/about")));
        // With live reload off, nothing is put in pages and /__hotswap/ is the app's.
        assert!(!String::from_utf8_lossy(&answers[6].2).contains("__hotswap"));
        let (status, _, _) =
            exchange(address, "GET /__hotswap/live.js HTTP/1.1\nHost: x\nConnection: close\n\n");
        assert!(status.contains("404"), "{status}");
        let stopped = app.hotswap(&["stop"]);
        assert!(stopped.status.success());
        drop(daemon);
        answers
    };
    let config = app.path("hotswap.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("live_reload = false", "live_reload = true")).unwrap();
    // The same state as the first daemon started with (the visit count).
    let daemon = app.serve_with(&["--fresh-state"]).await;
    daemon.wait_for_generation(1).await;
    let address = daemon.address();
    for (request, before) in requests.iter().zip(&off) {
        let after = exchange(address, request);
        assert_eq!(&after, before, "changed by live reload: {request}");
    }
    assert_eq!(
        header(&off[4].1, "content-type"),
        Some("text/html; charset=utf-8"),
        "HEAD of a page"
    );
    assert!(off[4].2.is_empty());
    assert_eq!(&off[2].2, &(0..=255).collect::<Vec<u8>>(), "binary, uncompressed by the app");

    // A navigation gets the script before </body>, and a Content-Length that is right.
    let (status, headers, body) = exchange(address, &navigation("/about"));
    assert!(status.ends_with("200 OK"), "{status}");
    let length: usize = header(&headers, "content-length").expect("a length").parse().unwrap();
    assert_eq!(length, body.len());
    let page = String::from_utf8(body).unwrap();
    let plain = String::from_utf8(off[6].2.clone()).unwrap();
    let tag = "<script src=\"/__hotswap/live.js\" data-hotswap-generation=\"1\"></script>";
    assert_eq!(page, plain.replacen("</body>", &format!("{tag}</body>"), 1));
    let (status, headers, script) =
        exchange(address, "GET /__hotswap/live.js HTTP/1.1\nHost: x\nConnection: close\n\n");
    assert!(status.ends_with("200 OK"));
    assert_eq!(header(&headers, "content-type"), Some("text/javascript; charset=utf-8"));
    assert!(String::from_utf8_lossy(&script).contains("__hotswapLiveReload"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_behind_a_compression_layer_gets_live_reload() {
    let app = App::copy_of_crate(
        &repository_root().join("tests/fixtures/compressed"),
        "live-compressed",
        "[browser]\nlive_reload = true\n",
    );
    let daemon = app.serve().await;
    daemon.wait_for_generation(1).await;
    let address = daemon.address();

    // The page comes back uncompressed, with the script; other answers stay compressed.
    let (_, headers, body) = exchange(address, &navigation("/"));
    assert_eq!(header(&headers, "content-encoding"), None, "{headers:?}");
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains("<script src=\"/__hotswap/live.js\""), "{page}");
    let data =
        "GET /data HTTP/1.1\nHost: x\nAccept: */*\nAccept-Encoding: gzip\nConnection: close\n\n";
    let (_, headers, body) = exchange(address, data);
    assert_eq!(header(&headers, "content-encoding"), Some("gzip"));
    assert_eq!(header(&headers, "transfer-encoding"), Some("chunked"));
    assert_eq!(&dechunked(&body)[..2], [0x1f, 0x8b], "gzip");

    let mut browser = Browser::launch().await.unwrap();
    let url = format!("http://{address}/");
    browser.open("page", &url).await.unwrap();
    browser.wait_for("page", CONNECTED, STEP_TIMEOUT).await.unwrap();
    let started = Instant::now();
    edit(&app, "src/lib.rs", "compressed page, first version", "compressed page, saved");
    save(&app, "src/lib.rs");
    browser
        .wait_for(
            "page",
            "document.getElementById('headline').textContent === 'compressed page, saved'",
            STEP_TIMEOUT,
        )
        .await
        .unwrap();
    eprintln!("CompressionLayer app: save → new text in {:?}", started.elapsed());
    browser.quit().await;
}
