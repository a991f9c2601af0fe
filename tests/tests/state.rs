//! The app's State as a user meets it, with real builds of a to-do app and the real `hotswap`
//! binary: changes to the State type that the old items do not fit are refused with the place
//! and the fix while the old code keeps serving them; a rename never drops a value silently;
//! `--fresh-state` then `rollback` brings the items back; the items survive `hotswap stop` and a
//! SIGKILL of `hotswap serve`; `hotswap state` shows the items and `--load` replaces them.

use std::process::Output;
use std::time::{Duration, Instant};

use hotswap_protocol::events::Event;
use hotswap_tests::artifacts::shared_handler_target_dir;
use hotswap_tests::binaries::{App, wait_for_event};
use hotswap_tests::http::{HttpResponse, get, request};
use serde_json::Value;

/// A to-do app whose items live in its `State`, keyed by name:
/// `GET /todos` (the items as JSON), `POST /todos/{key}?{title}` (adds one),
/// `POST /todos/{key}/done` (marks it done), `GET /health`.
const TODO_APP: &str = r#"
use std::collections::BTreeMap;
use std::sync::Mutex;

use hotswap_handler::http::{Method, StatusCode};
use hotswap_handler::{Body, Handler, Request, Response, serde_json};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Todos {
    items: BTreeMap<String, Todo>,
}

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Todo {
    title: String,
    done: bool,
}

pub struct App {
    todos: Mutex<Todos>,
}

impl Handler for App {
    type State = Todos;

    fn new(state: Todos) -> Self {
        App { todos: Mutex::new(state) }
    }

    fn export_state(&self) -> Option<Todos> {
        Some(self.todos.lock().unwrap().clone())
    }

    async fn handle(&self, request: Request) -> Response {
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or_default().to_owned();
        let mut todos = self.todos.lock().unwrap();
        match (request.method().clone(), path.as_str()) {
            (Method::GET, "/health") => reply(StatusCode::OK, "ok\n".to_owned()),
            (Method::GET, "/todos") => {
                reply(StatusCode::OK, serde_json::to_string(&todos.items).unwrap())
            }
            (Method::POST, path) if path.ends_with("/done") => {
                let key = path.trim_start_matches("/todos/").trim_end_matches("/done");
                match todos.items.get_mut(key) {
                    Some(todo) => {
                        todo.done = true;
                        reply(StatusCode::OK, "done\n".to_owned())
                    }
                    None => reply(StatusCode::NOT_FOUND, "no such item\n".to_owned()),
                }
            }
            (Method::POST, path) if path.starts_with("/todos/") => {
                let key = path.trim_start_matches("/todos/").to_owned();
                let todo = Todo { title: query, ..Default::default() };
                todos.items.insert(key, todo);
                reply(StatusCode::CREATED, "added\n".to_owned())
            }
            _ => reply(StatusCode::NOT_FOUND, "not found\n".to_owned()),
        }
    }
}

fn reply(status: StatusCode, text: String) -> Response {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response
}

hotswap_handler::export_handler!(App);
"#;

const ITEMS: [(&str, &str); 3] =
    [("milk", "buy-milk"), ("bread", "bake-bread"), ("eggs", "get-eggs")];

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A scaffolded app running the to-do code.
fn todo_app(name: &str) -> App {
    let app = App::scaffold(name);
    std::fs::write(app.path("src/lib.rs"), TODO_APP).unwrap();
    app
}

/// Replaces every `old` in `src/lib.rs` with `new`.
fn edit_everywhere(app: &App, old: &str, new: &str) {
    let path = app.path("src/lib.rs");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(old), "src/lib.rs does not contain {old:?}");
    std::fs::write(&path, text.replace(old, new)).unwrap();
}

async fn add_items(address: std::net::SocketAddr) {
    for (key, title) in ITEMS {
        let response =
            request(address, "POST", &format!("/todos/{key}?{title}"), "").await.unwrap();
        assert_eq!(response.status, 201, "{response:?}");
    }
}

async fn todos(address: std::net::SocketAddr) -> (Value, HttpResponse) {
    let response = get(address, "/todos").await.unwrap();
    assert_eq!(response.status, 200, "{response:?}");
    (serde_json::from_str(&response.body).unwrap(), response)
}

/// The items' titles (or the value of `field`) by key.
fn field_of(items: &Value, field: &str) -> Vec<(String, Value)> {
    items
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {items}"))
        .iter()
        .map(|(key, item)| (key.clone(), item[field].clone()))
        .collect()
}

fn titles(items: &Value, field: &str) -> Vec<(String, String)> {
    field_of(items, field)
        .into_iter()
        .map(|(key, title)| (key, title.as_str().unwrap_or_default().to_owned()))
        .collect()
}

fn original_titles() -> Vec<(String, String)> {
    let mut items: Vec<_> =
        ITEMS.iter().map(|(key, title)| ((*key).to_owned(), (*title).to_owned())).collect();
    items.sort();
    items
}

fn assert_refused(output: &Output, what: &str) -> String {
    let text = stderr(output);
    assert!(!output.status.success(), "{what}: the reload must fail:\n{}{text}", stdout(output));
    assert!(text.contains("refused at the state stage"), "{what}: {text}");
    assert!(text.contains(" keeps serving, with its state"), "{what}: {text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_field_without_a_default_is_refused_with_the_fix_and_every_item_stays() {
    let app = todo_app("state-new-field");
    let daemon = app.serve().await;
    daemon.wait_for_generation(1).await;
    let address = daemon.address();
    add_items(address).await;

    let mut events = daemon.subscriber().await;
    edit_everywhere(&app, "    done: bool,\n}", "    done: bool,\n    priority: u8,\n}");
    let reloaded = app.hotswap(&["reload"]);
    let text = assert_refused(&reloaded, "a field without a default");
    // Where, what, and every way out.
    assert!(text.contains(r#"`items["bread"].priority`"#), "the path inside the state: {text}");
    assert!(text.contains("`#[serde(default)]` to `priority` in `Todo`"), "{text}");
    assert!(text.contains("`STATE_VERSION`") && text.contains("`migrate_state`"), "{text}");
    assert!(text.contains("`hotswap reload --fresh-state`"), "{text}");
    // The struct in the code, as a compiler would point at it.
    let source = app.path("src/lib.rs").canonicalize().unwrap();
    let pointer = text
        .lines()
        .find(|line| line.contains("see here"))
        .unwrap_or_else(|| panic!("no pointer into the code: {text}"));
    assert!(pointer.contains(&format!("{}:", source.display())), "{pointer}");
    let line: usize = pointer.split(':').nth(1).unwrap().parse().unwrap();
    let code = std::fs::read_to_string(&source).unwrap();
    assert!(code.lines().nth(line - 1).unwrap().contains("priority"), "{pointer}");
    // Editors get the same, with the place in the code for their Problems.
    let failed = wait_for_event(&mut events, Duration::from_secs(60), |event| {
        matches!(event, Event::SwapFailed(_))
    })
    .await;
    let Event::SwapFailed(failed) = failed else { unreachable!() };
    let problem = failed.state.expect("the state problem");
    assert_eq!(
        (problem.struct_name.as_deref(), problem.field.as_deref(), problem.path.as_deref()),
        (Some("Todo"), Some("priority"), Some(r#"items["bread"].priority"#))
    );
    let at = &failed.diagnostics[0];
    assert_eq!(at.file.as_deref(), Some(source.as_path()));
    assert_eq!(at.range.expect("a range").start.line as usize, line - 1);
    assert_eq!(at.code.as_deref(), Some("hotswap::state"));
    // Type names as written, never two identical ones shown as different.
    assert!(text.contains("this build's `Todos`"), "{text}");
    assert!(!text.contains("state_new_field::"), "{text}");

    let (items, response) = todos(address).await;
    assert_eq!(response.generation(), Some(1), "the old code keeps serving");
    assert_eq!(titles(&items, "title"), original_titles(), "with every item");
    let status = daemon.status().await;
    let refused = status.refused_swap.expect("status says a swap was refused");
    assert!(refused.message.contains("priority"), "{refused:?}");

    // The fix the message gives: every item is kept, with the default.
    edit_everywhere(&app, "    priority: u8,", "    #[serde(default)]\n    priority: u8,");
    let reloaded = app.hotswap(&["reload"]);
    assert!(reloaded.status.success(), "{}", stderr(&reloaded));
    let (items, response) = todos(address).await;
    assert!(response.generation() > Some(1), "{response:?}");
    assert_eq!(titles(&items, "title"), original_titles());
    for (key, priority) in field_of(&items, "priority") {
        assert_eq!(priority, 0, "{key} has the default priority");
    }
    assert!(daemon.status().await.refused_swap.is_none(), "the refusal is over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_field_never_loses_its_value() {
    let app = todo_app("state-rename");
    let daemon = app.serve().await;
    daemon.wait_for_generation(1).await;
    let address = daemon.address();
    add_items(address).await;
    assert_eq!(request(address, "POST", "/todos/milk/done", "").await.unwrap().status, 200);

    // Renamed without a default: refused, naming the old field and the alias that keeps it.
    edit_everywhere(&app, "    title: String,", "    name: String,");
    edit_everywhere(&app, "Todo { title: query", "Todo { name: query");
    let text = assert_refused(&app.hotswap(&["reload"]), "a rename without a default");
    assert!(text.contains("`title`"), "the old field is named: {text}");
    assert!(text.contains(r#"`#[serde(alias = "title")]`"#), "{text}");

    // Renamed with a default: it would read, but `title` would be dropped: refused too.
    edit_everywhere(&app, "    name: String,", "    #[serde(default)]\n    name: String,");
    let text = assert_refused(&app.hotswap(&["reload"]), "a rename with a default");
    assert!(text.contains("field `title` of `Todo`"), "{text}");
    assert!(text.contains(r#"at `items["bread"].title`"#), "{text}");
    assert!(text.contains("would lose its value"), "{text}");
    let (items, response) = todos(address).await;
    assert_eq!(response.generation(), Some(1));
    assert_eq!(titles(&items, "title"), original_titles());

    // With the alias the message suggests, every title moves to `name`.
    edit_everywhere(
        &app,
        "    #[serde(default)]\n    name: String,",
        "    #[serde(alias = \"title\")]\n    name: String,",
    );
    let reloaded = app.hotswap(&["reload"]);
    assert!(reloaded.status.success(), "{}", stderr(&reloaded));
    let (items, response) = todos(address).await;
    assert!(response.generation() > Some(1));
    assert_eq!(titles(&items, "name"), original_titles());

    // A rename through `migrate_state`: `done` becomes `finished`, values and all.
    edit_everywhere(&app, "    done: bool,", "    finished: bool,");
    edit_everywhere(&app, "todo.done = true;", "todo.finished = true;");
    edit_everywhere(
        &app,
        "    type State = Todos;\n",
        r#"    type State = Todos;

    const STATE_VERSION: u32 = 2;

    fn migrate_state(from_version: u32, mut state: serde_json::Value) -> Result<Todos, String> {
        if from_version != 1 {
            return Err(format!("no migration from version {from_version}"));
        }
        for item in state["items"].as_object_mut().ok_or("no items")?.values_mut() {
            let item = item.as_object_mut().ok_or("an item is not an object")?;
            let done = item.remove("done").unwrap_or_default();
            item.insert("finished".to_owned(), done);
        }
        serde_json::from_value(state).map_err(|error| error.to_string())
    }
"#,
    );
    let reloaded = app.hotswap(&["reload"]);
    assert!(reloaded.status.success(), "{}", stderr(&reloaded));
    let (items, _) = todos(address).await;
    assert_eq!(titles(&items, "name"), original_titles());
    let finished = field_of(&items, "finished");
    assert_eq!(
        finished,
        vec![
            ("bread".to_owned(), Value::Bool(false)),
            ("eggs".to_owned(), Value::Bool(false)),
            ("milk".to_owned(), Value::Bool(true)),
        ],
        "the migration moved every value"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_state_on_purpose_then_rollback_brings_the_items_back() {
    let app = todo_app("state-fresh-rollback");
    let daemon = app.serve().await;
    daemon.wait_for_generation(1).await;
    let address = daemon.address();
    add_items(address).await;

    // Forced even though the code did not change.
    let fresh = app.hotswap(&["reload", "--fresh-state"]);
    assert!(fresh.status.success(), "{}", stderr(&fresh));
    assert!(stdout(&fresh).starts_with("swapped to generation 2"), "{}", stdout(&fresh));
    assert!(stderr(&fresh).contains("fresh"), "it says the state was dropped: {}", stderr(&fresh));
    let (items, response) = todos(address).await;
    assert_eq!((items, response.generation()), (serde_json::json!({}), Some(2)));
    let added = request(address, "POST", "/todos/tea?brew-tea", "").await.unwrap();
    assert_eq!(added.status, 201);

    let rolled = app.hotswap(&["rollback"]);
    assert!(rolled.status.success(), "{}", stderr(&rolled));
    assert!(
        stderr(&rolled).contains("generation 1 last exported"),
        "it says which state it restored: {}",
        stderr(&rolled)
    );
    let (items, response) = todos(address).await;
    assert_eq!(response.generation(), Some(3));
    assert_eq!(titles(&items, "title"), original_titles(), "the items are back");
}

/// Waits until the snapshot `hotswap serve` keeps on disk was taken after `after`.
fn wait_for_snapshot_on_disk(library: &str, after: std::time::SystemTime) {
    let directory = shared_handler_target_dir().join("state");
    let deadline = Instant::now() + Duration::from_secs(20);
    let after_ms = after.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    loop {
        let taken = std::fs::read_dir(&directory).ok().and_then(|entries| {
            entries.flatten().find_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !(name.starts_with(&format!("{library}-")) && name.ends_with(".json")) {
                    return None;
                }
                let facts: Value =
                    serde_json::from_slice(&std::fs::read(entry.path()).ok()?).ok()?;
                facts["takenUnixMs"].as_u64()
            })
        });
        if taken.is_some_and(|taken| taken >= after_ms) {
            return;
        }
        assert!(Instant::now() < deadline, "no snapshot of {library} on disk after the writes");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_items_survive_a_stop_and_a_kill_of_hotswap_serve() {
    let app = todo_app("state-restart");
    let mut daemon = app.serve().await;
    daemon.wait_for_generation(1).await;
    add_items(daemon.address()).await;

    // `hotswap stop`: the state is written as the daemon ends.
    let stopped = app.hotswap(&["stop"]);
    assert!(stopped.status.success(), "{}", stderr(&stopped));
    daemon.wait_for_exit(Duration::from_secs(60));
    drop(daemon);
    let mut daemon = app.serve().await;
    daemon.wait_for_generation(1).await;
    let (items, _) = todos(daemon.address()).await;
    assert_eq!(titles(&items, "title"), original_titles(), "the items are back after a stop");
    let log = daemon.log();
    assert!(
        log.contains("found the state the last `hotswap serve` left") && log.contains(" ago)"),
        "the log says the state came back, and from when:\n{log}"
    );

    // SIGKILL: what the periodic snapshot had written survives.
    let written = std::time::SystemTime::now();
    let added = request(daemon.address(), "POST", "/todos/tea?brew-tea", "").await.unwrap();
    assert_eq!(added.status, 201);
    wait_for_snapshot_on_disk("state_restart", written);
    daemon.kill();
    let daemon = app.serve().await;
    daemon.wait_for_generation(1).await;
    let (items, _) = todos(daemon.address()).await;
    let mut expected = original_titles();
    expected.push(("tea".to_owned(), "brew-tea".to_owned()));
    expected.sort();
    assert_eq!(titles(&items, "title"), expected, "the items are back after SIGKILL");
    drop(daemon);

    // `--fresh-state` starts empty, on purpose.
    let log_path = app.runtime_dir.join("fresh.log");
    let mut fresh = std::process::Command::new(hotswap_tests::binaries::binary("hotswap"))
        .args(["serve", "--fresh-state"])
        .current_dir(&app.directory)
        .env("XDG_RUNTIME_DIR", &app.runtime_dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&log_path).unwrap())
        .stderr(std::fs::File::create(app.runtime_dir.join("fresh.err")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        let output = app.hotswap(&["status", "--json"]);
        if output.status.success() {
            let status: Value = serde_json::from_slice(&output.stdout).unwrap();
            if status["currentGeneration"].as_u64().is_some() {
                break status;
            }
        }
        assert!(Instant::now() < deadline, "the fresh daemon does not serve");
        std::thread::sleep(Duration::from_millis(100));
    };
    let address: std::net::SocketAddr = status["listenAddress"].as_str().unwrap().parse().unwrap();
    let (items, _) = todos(address).await;
    let _ = fresh.kill();
    let _ = fresh.wait();
    assert_eq!(items, serde_json::json!({}), "--fresh-state starts empty");
    let log = std::fs::read_to_string(app.runtime_dir.join("fresh.err")).unwrap();
    assert!(log.contains("starting with a fresh state, as asked (--fresh-state)"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hotswap_state_prints_the_items_and_load_replaces_them() {
    let app = todo_app("state-print-load");
    let daemon = app.serve().await;
    daemon.wait_for_generation(1).await;
    let address = daemon.address();
    add_items(address).await;

    let printed = app.hotswap(&["state"]);
    assert!(printed.status.success(), "{}", stderr(&printed));
    let document: Value = serde_json::from_str(&stdout(&printed)).unwrap();
    assert_eq!((document["version"].as_u64(), document["type"].as_str()), (Some(1), Some("Todos")));
    assert_eq!(titles(&document["state"]["items"], "title"), original_titles());

    // Edit the file `--output` wrote, then load it.
    let file = app.path("seed.json");
    let written = app.hotswap(&["state", "--output", file.to_str().unwrap()]);
    assert!(written.status.success(), "{}", stderr(&written));
    assert!(stderr(&written).contains("hotswap state --load"), "{}", stderr(&written));
    let mut document: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let items = document["state"]["items"].as_object_mut().unwrap();
    items.remove("eggs");
    items["milk"]["title"] = "buy-oat-milk".into();
    items.insert("jam".into(), serde_json::json!({"title": "make-jam", "done": true}));
    std::fs::write(&file, serde_json::to_vec_pretty(&document).unwrap()).unwrap();
    let loaded = app.hotswap(&["state", "--load", "seed.json"]);
    assert!(loaded.status.success(), "{}", stderr(&loaded));
    let (items, response) = todos(address).await;
    assert!(response.generation() > Some(1), "{response:?}");
    assert_eq!(
        titles(&items, "title"),
        vec![
            ("bread".to_owned(), "bake-bread".to_owned()),
            ("jam".to_owned(), "make-jam".to_owned()),
            ("milk".to_owned(), "buy-oat-milk".to_owned()),
        ]
    );

    // A file that does not fit the type is refused the way a swap is; the items stay.
    std::fs::write(&file, r#"{"items": {"x": {"title": 7, "done": false}}}"#).unwrap();
    let refused = app.hotswap(&["state", "--load", "seed.json"]);
    let text = assert_refused(&refused, "a state of the wrong shape");
    assert!(text.contains(r#"items["x"].title"#), "{text}");
    assert!(text.contains("Fix the file and load it again"), "{text}");
    assert!(!text.contains("--fresh-state"), "advice for code changes: {text}");
    std::fs::write(&file, "{ not json").unwrap();
    let malformed = app.hotswap(&["state", "--load", "seed.json"]);
    assert!(!malformed.status.success());
    assert!(stderr(&malformed).contains("seed.json"), "{}", stderr(&malformed));
    let (after, _) = todos(address).await;
    assert_eq!(after, items, "the loaded items keep serving");
}
