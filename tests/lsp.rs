//! Editing cloud.yml in an IDE, tested for real: drives the `yaml-language-server` found
//! through `YAML_LANGUAGE_SERVER` over stdio, speaking LSP's JSON-RPC framing by hand. The
//! server reads the schema through each file's `# yaml-language-server: $schema=` modeline.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const SETUP_HINT: &str = "run `bash .ci/setup.sh` and `source .tools/tools.env`";

struct Server {
    child: Child,
    stdin: ChildStdin,
    messages: Receiver<Value>,
    next_id: u64,
    /// Notifications seen while waiting for responses.
    backlog: Vec<Value>,
}

fn settings() -> Value {
    json!({
        "validate": true,
        "hover": true,
        "completion": true,
        "format": {"enable": false},
        "schemaStore": {"enable": false},
        "yamlVersion": "1.2"
    })
}

impl Server {
    fn start() -> Server {
        let bin = std::env::var("YAML_LANGUAGE_SERVER")
            .unwrap_or_else(|_| panic!("YAML_LANGUAGE_SERVER is not set: {SETUP_HINT}"));
        assert!(
            Path::new(&bin).exists(),
            "YAML_LANGUAGE_SERVER={bin} does not exist: {SETUP_HINT}"
        );
        let mut child = Command::new(&bin)
            .arg("--stdio")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}: {SETUP_HINT}"));
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut length = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("Content-Length:") {
                        length = v.trim().parse::<usize>().ok();
                    }
                }
                let Some(length) = length else { return };
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                match serde_json::from_slice::<Value>(&body) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        });
        let mut server = Server {
            child,
            stdin,
            messages: rx,
            next_id: 1,
            backlog: Vec::new(),
        };
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        server.request(
            "initialize",
            json!({
                "processId": std::process::id(),
                "rootUri": uri(root),
                "capabilities": {
                    "workspace": {"configuration": true, "didChangeConfiguration": {"dynamicRegistration": false}},
                    "textDocument": {
                        "publishDiagnostics": {"relatedInformation": false},
                        "hover": {"contentFormat": ["markdown", "plaintext"]},
                        "completion": {"completionItem": {"snippetSupport": false}}
                    }
                },
                "initializationOptions": {}
            }),
        );
        server.notify("initialized", json!({}));
        server.notify(
            "workspace/didChangeConfiguration",
            json!({"settings": {"yaml": settings()}}),
        );
        server
    }

    fn send(&mut self, message: Value) {
        let body = message.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{}", body.len(), body).unwrap();
        self.stdin.flush().unwrap();
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Answers requests the server makes of the client; returns other messages.
    fn receive(&mut self, timeout: Duration) -> Option<Value> {
        loop {
            let msg = match self.messages.recv_timeout(timeout) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("yaml-language-server exited: {SETUP_HINT}")
                }
            };
            if let (Some(id), Some(method)) = (msg.get("id"), msg.get("method")) {
                let result = match method.as_str() {
                    Some("workspace/configuration") => {
                        let items = msg["params"]["items"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default();
                        Value::Array(
                            items
                                .iter()
                                .map(|i| match i["section"].as_str() {
                                    Some("yaml") => settings(),
                                    _ => Value::Null,
                                })
                                .collect(),
                        )
                    }
                    _ => Value::Null,
                };
                let id = id.clone();
                self.send(json!({"jsonrpc": "2.0", "id": id, "result": result}));
                continue;
            }
            return Some(msg);
        }
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(msg) = self.receive(Duration::from_secs(60)) {
                if msg.get("id") == Some(&json!(id)) {
                    if let Some(err) = msg.get("error") {
                        panic!("{method} failed: {err}");
                    }
                    return msg["result"].clone();
                }
                self.backlog.push(msg);
            }
        }
        panic!("no answer to {method} within 60 s");
    }

    fn open(&mut self, uri: &str, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": uri, "languageId": "yaml", "version": 1, "text": text}}),
        );
    }

    /// The diagnostics published last for `uri`, once the server has gone quiet about it.
    fn diagnostics(&mut self, uri: &str) -> Vec<Value> {
        let matches = |m: &Value| {
            m["method"] == "textDocument/publishDiagnostics" && m["params"]["uri"] == uri
        };
        let mut last: Option<Vec<Value>> = None;
        for m in self.backlog.drain(..) {
            if matches(&m) {
                last = m["params"]["diagnostics"].as_array().cloned();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let quiet = if last.is_some() {
                Duration::from_millis(1500)
            } else {
                Duration::from_secs(60)
            };
            match self.receive(quiet) {
                Some(m) if matches(&m) => last = m["params"]["diagnostics"].as_array().cloned(),
                Some(_) => {}
                None => break,
            }
        }
        last.unwrap_or_else(|| panic!("no diagnostics published for {uri}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A document beside the jaffle-shop example, so its relative modeline finds the schema.
fn virtual_doc(name: &str) -> String {
    uri(&repo().join("examples/jaffle-shop").join(name))
}

const HEADER: &str = "# yaml-language-server: $schema=../../schema/cloud.schema.json\n";

#[test]
fn language_server_understands_cloud_yml() {
    let mut server = Server::start();

    // A misspelled field is reported on its line.
    let text = format!(
        "{HEADER}version: 1\nproject: demo\ndeployments:\n  prod:\n    environment: prod\n    git_rev: main\n    protectd: true\n"
    );
    let u = virtual_doc("wrong-field.yml");
    server.open(&u, &text);
    let diags = server.diagnostics(&u);
    assert_eq!(diags.len(), 1, "{diags:#?}");
    assert_eq!(diags[0]["range"]["start"]["line"], 7, "{diags:#?}");
    assert!(
        diags[0]["message"].as_str().unwrap().contains("protectd"),
        "{diags:#?}"
    );

    // The examples open clean (the schema is known to apply: see above).
    for example in ["jaffle-shop", "acme-analytics"] {
        let path = repo().join("examples").join(example).join("cloud.yml");
        let text = std::fs::read_to_string(&path).unwrap();
        let u = uri(&path);
        server.open(&u, &text);
        let diags = server.diagnostics(&u);
        assert!(diags.is_empty(), "{example}/cloud.yml: {diags:#?}");
    }

    // Completion inside a deployment offers its fields.
    let text = format!(
        "{HEADER}version: 1\nproject: demo\ndeployments:\n  prod:\n    environment: prod\n    \n"
    );
    let u = virtual_doc("completion.yml");
    server.open(&u, &text);
    let result = server.request(
        "textDocument/completion",
        json!({"textDocument": {"uri": u}, "position": {"line": 6, "character": 4}}),
    );
    let items = result
        .get("items")
        .and_then(Value::as_array)
        .or_else(|| result.as_array())
        .cloned()
        .unwrap_or_default();
    let labels: Vec<&str> = items.iter().filter_map(|i| i["label"].as_str()).collect();
    for field in ["git_rev", "schedules", "protected"] {
        assert!(
            labels.contains(&field),
            "completion lacks {field}: {labels:?}"
        );
    }
    assert!(
        !labels.contains(&"project"),
        "offers top-level fields: {labels:?}"
    );

    // Hover on a field shows its description.
    let path = repo().join("examples/jaffle-shop/cloud.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let (line, col) = text
        .lines()
        .enumerate()
        .find_map(|(i, l)| l.find("git_rev").map(|c| (i, c)))
        .unwrap();
    let hover = server.request(
        "textDocument/hover",
        json!({"textDocument": {"uri": uri(&path)}, "position": {"line": line, "character": col + 2}}),
    );
    let contents = hover["contents"].to_string();
    assert!(
        contents.contains("Branch, tag or commit the deployment tracks"),
        "hover: {hover:#}"
    );
}
