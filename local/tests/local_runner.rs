//! The README's first command, as a process: it prints where it listens and
//! what it serves, answers the chat routes on one port, and listens on
//! loopback only unless `HOST` says otherwise.

use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

async fn get_json(http: &reqwest::Client, url: impl reqwest::IntoUrl) -> Value {
    let response = http.get(url).send().await.expect("GET");
    response.json().await.expect("a JSON answer")
}

async fn post_json(http: &reqwest::Client, url: impl reqwest::IntoUrl, body: &'static str) -> Value {
    let response = http.post(url).body(body).send().await.expect("POST");
    response.json().await.expect("a JSON answer")
}

#[tokio::test]
async fn local_serves_every_function_on_one_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = agent_core::testing::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_local"))
        .env_clear()
        .env("ENV_FILE", "off")
        .env("PORT", port.to_string())
        // Start-up warnings (no model, no keys) would come first on stdout.
        .env("RUST_LOG", "error")
        // The default SQLITE_PATH is relative: run where it may create it.
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn local");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), stdout.next_line())
        .await
        .expect("a banner in time")
        .expect("read")
        .expect("a line");
    assert!(first.contains(&format!("http://127.0.0.1:{port}")), "{first}");
    assert!(first.contains("offline"), "{first}");
    let mut banner = vec![first];
    while let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_millis(200), stdout.next_line()).await {
        banner.push(line);
    }
    let banner = banner.join("\n");
    for route in [
        "POST   /api/v1/chat",
        "GET    /api/v1/sessions/{id}",
        "POST   /api/v1/agent",
        "GET    /api/v1/tasks/{id}",
        "GET    /api/v1/tasks/{id}/events",
        "POST   /api/v1/multi-agent",
        "POST   /api/v1/research",
        "GET    /api/v1/research/{id}",
        "POST   /api/v1/tools/search",
        "POST   /api/v1/tools/calculate",
        "GET    /health",
    ] {
        assert!(banner.contains(route), "{banner}");
    }

    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let health = get_json(&http, format!("{base}/health")).await;
    assert_eq!(health["function"], "local");

    let chat = post_json(&http, format!("{base}/api/v1/chat"), r#"{"message":"hello"}"#).await;
    assert!(chat["tokens_used"].as_u64().expect("tokens") > 0);
    let sid = chat["session_id"].as_str().expect("session id");
    let session = get_json(&http, format!("{base}/api/v1/sessions/{sid}")).await;
    assert_eq!(session["messages"].as_array().expect("messages").len(), 2);
    assert!(
        dir.path().join(".agent-data/agent.db").exists(),
        "the embedded store is under .agent-data/"
    );

    // The agent, with the tools in the same process.
    let run = post_json(
        &http,
        format!("{base}/api/v1/agent"),
        r#"{"task":"Calcula 15 * 23 y busca información sobre matemáticas"}"#,
    )
    .await;
    assert!(run["response"].as_str().expect("response").contains("345"), "{run}");
    let tools: Vec<&str> = run["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["tool"].as_str().expect("tool"))
        .collect();
    assert_eq!(tools, ["calculate", "search_web"]);
    let task = get_json(
        &http,
        format!("{base}/api/v1/tasks/{}", run["task_id"].as_str().expect("task id")),
    )
    .await;
    assert_eq!(task["status"], "completed");
    let calc = post_json(
        &http,
        format!("{base}/api/v1/tools/calculate"),
        r#"{"expression":"2*(3+4)"}"#,
    )
    .await;
    assert_eq!(calc["result"], 14);

    // The same task asynchronously, through the local queue: 202 and
    // queued, then completed; its events show the steps.
    let accepted = http
        .post(format!("{base}/api/v1/agent"))
        .body(r#"{"task":"Calcula 15 * 23 y busca información sobre matemáticas","async":true}"#)
        .send()
        .await
        .expect("agent async");
    assert_eq!(accepted.status().as_u16(), 202);
    let accepted: Value = accepted.json().await.expect("json");
    assert_eq!(accepted["status"], "queued");
    let status_url = format!("{base}{}", accepted["status_url"].as_str().expect("status_url"));
    let events = http
        .get(format!(
            "{base}{}",
            accepted["events_url"].as_str().expect("events_url")
        ))
        .send()
        .await
        .expect("events")
        .text()
        .await
        .expect("the stream ends after done");
    assert!(
        events.contains("event: step") && events.contains("\"tool\":\"calculate\""),
        "{events}"
    );
    assert!(
        events.contains("\"tool\":\"search_web\"") && events.contains("event: done"),
        "{events}"
    );
    let task = get_json(&http, &status_url).await;
    assert_eq!(task["status"], "completed", "{task}");
    assert!(
        task["result"]["response"].as_str().expect("response").contains("345"),
        "{task}"
    );

    // Several agents on the README's example: a plan of two subtasks, both
    // results in the answer.
    let team = post_json(
        &http,
        format!("{base}/api/v1/multi-agent"),
        r#"{"task":"Calcula 25*4, busca información sobre cold start y resume ambos"}"#,
    )
    .await;
    assert!(
        team["plan"]["subtasks"].as_array().expect("subtasks").len() >= 2,
        "{team}"
    );
    let answer = team["response"].as_str().expect("response");
    assert!(answer.contains("100") && answer.contains("Cold start"), "{team}");

    // A research on serverless cold start: its report cites the sources
    // its searches returned, and nothing else.
    let accepted = post_json(
        &http,
        format!("{base}/api/v1/research"),
        r#"{"topic":"serverless cold start","depth":"quick","max_subtopics":2}"#,
    )
    .await;
    let research_url = format!("{base}{}", accepted["status_url"].as_str().expect("status_url"));
    let mut research = Value::Null;
    for _ in 0..200 {
        research = get_json(&http, &research_url).await;
        if research["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(research["status"], "completed", "{research}");
    let result = &research["result"];
    let sources = result["sources"].as_array().expect("sources").len();
    let report = result["report"].as_str().expect("a report");
    let cited = agent_core::research::sources::citations(report);
    assert!(
        !cited.is_empty() && cited.iter().all(|n| (1..=sources).contains(n)),
        "{report}"
    );

    // The POST / aliases belong to the standalone functions; `/` is the
    // console's page.
    let root = http
        .post(format!("{base}/"))
        .json(&json!({"message": "hi"}))
        .send()
        .await
        .expect("post /");
    assert_eq!(root.status().as_u16(), 405);
    let page = http.get(format!("{base}/")).send().await.expect("get /");
    assert_eq!(page.status().as_u16(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert!(
        banner.contains(&format!("console: open http://127.0.0.1:{port}/ in a browser")),
        "{banner}"
    );
}

#[tokio::test]
async fn console_off_serves_no_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = agent_core::testing::free_port();
    let (_child, url, _) = start_local(dir.path(), port, &[("CONSOLE", "off")]).await;
    assert!(url.contains(&format!("127.0.0.1:{port}")), "{url}");
    let http = reqwest::Client::new();
    let mut page = None;
    for _ in 0..100 {
        if let Ok(response) = http.get(format!("http://127.0.0.1:{port}/")).send().await {
            page = Some(response.status().as_u16());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(page, Some(404), "CONSOLE=off: no page at /");
}

/// `local` started in `dir` on `port` with `vars`, and the first two lines
/// of its banner: the URL, then where it listens and who can reach it.
async fn start_local(
    dir: &std::path::Path,
    port: u16,
    vars: &[(&str, &str)],
) -> (tokio::process::Child, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_local"))
        .env_clear()
        .env("ENV_FILE", "off")
        .env("PORT", port.to_string())
        .env("RUST_LOG", "error")
        .envs(vars.iter().copied())
        .current_dir(dir)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn local");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut line = async || {
        tokio::time::timeout(Duration::from_secs(10), stdout.next_line())
            .await
            .expect("a banner in time")
            .expect("read")
            .expect("a line")
    };
    let (url, reach) = (line().await, line().await);
    // Keep reading: a closed pipe would fail local's next write to stdout.
    tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
    (child, url, reach)
}

/// This machine's addresses other than loopback, as a client elsewhere on
/// its networks would reach it: what `hostname -I` lists, and the source
/// address of the routes out (a UDP socket's address once "connected",
/// which sends nothing). IPv6 link-local addresses are left out: they need
/// a scope to connect to.
fn non_loopback_addresses() -> Vec<IpAddr> {
    let mut found: Vec<IpAddr> = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|word| word.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    // Documentation addresses (RFC 5737, RFC 3849): only the route to them matters.
    for (bind, out) in [("0.0.0.0:0", "203.0.113.1:9"), ("[::]:0", "[2001:db8::1]:9")] {
        if let Ok(socket) = std::net::UdpSocket::bind(bind)
            && socket.connect(out).is_ok()
            && let Ok(addr) = socket.local_addr()
        {
            found.push(addr.ip());
        }
    }
    let link_local = |ip: &IpAddr| matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
    found.retain(|ip| !ip.is_loopback() && !ip.is_unspecified() && !ip.is_multicast() && !link_local(ip));
    found.sort();
    found.dedup();
    found
}

/// The addresses the kernel has a listening TCP socket on for `port`
/// (/proc/net/tcp and tcp6): what was bound, whatever the process says.
#[cfg(target_os = "linux")]
fn listening_on(port: u16) -> Vec<SocketAddr> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for row in text.lines().skip(1) {
            let fields: Vec<&str> = row.split_whitespace().collect();
            // sl, local_address, rem_address, st (0A is LISTEN), ...
            let (Some(local), Some(&"0A")) = (fields.get(1), fields.get(3)) else {
                continue;
            };
            let (ip, p) = local.split_once(':').expect("ADDRESS:PORT");
            if u16::from_str_radix(p, 16).expect("hex port") != port {
                continue;
            }
            // The address's 32-bit words, each printed in host byte order.
            let bytes: Vec<u8> = (0..ip.len() / 8)
                .flat_map(|i| {
                    u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16)
                        .expect("hex word")
                        .to_ne_bytes()
                })
                .collect();
            let ip = match bytes.len() {
                4 => IpAddr::from(<[u8; 4]>::try_from(bytes).expect("4 bytes")),
                16 => IpAddr::from(<[u8; 16]>::try_from(bytes).expect("16 bytes")),
                n => panic!("{table}: an address of {n} bytes: {row}"),
            };
            found.push(SocketAddr::new(ip, port));
        }
    }
    found
}

#[tokio::test]
async fn local_is_not_reachable_from_the_network_unless_host_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = agent_core::testing::free_port();
    let (_local, url, reach) = start_local(dir.path(), port, &[]).await;
    assert!(url.contains(&format!("http://127.0.0.1:{port} ")), "{url}");
    assert!(
        reach.contains(&format!("listening on 127.0.0.1:{port}: this machine only")),
        "{reach}"
    );
    // It serves this machine.
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let health = get_json(&http, format!("http://127.0.0.1:{port}/health")).await;
    assert_eq!(health["function"], "local");
    #[cfg(target_os = "linux")]
    assert_eq!(
        listening_on(port),
        [SocketAddr::from(([127, 0, 0, 1], port))],
        "the kernel's listening sockets on port {port}"
    );

    // It refuses a connection on every other address of this machine.
    let addresses = non_loopback_addresses();
    assert!(
        !addresses.is_empty(),
        "this machine has no address but loopback (`hostname -I` lists none, and no route \
         leads out), so this test cannot try to reach local from the network. The listening \
         socket check passed; run the test on a machine with a network interface."
    );
    for ip in &addresses {
        let at = SocketAddr::new(*ip, port);
        match tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(at)).await {
            Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Ok(Err(err)) => panic!("connecting to {at}: {err}, not refused"),
            Ok(Ok(_)) => panic!("local, started without HOST, accepted a connection on {at}"),
            Err(_) => panic!("connecting to {at} timed out instead of being refused"),
        }
    }

    // The same addresses reach it once HOST opens it: the refusals above
    // were local's doing, not the network's. 0.0.0.0 is every IPv4
    // interface, :: every IPv6 one (and IPv4 too, where the system maps it).
    for (host, family) in [("0.0.0.0", true), ("::", false)] {
        let wanted: Vec<&IpAddr> = addresses.iter().filter(|ip| ip.is_ipv4() == family).collect();
        if wanted.is_empty() {
            continue;
        }
        let open = agent_core::testing::free_port();
        let (_open, url, reach) = start_local(dir.path(), open, &[("HOST", host)]).await;
        let listening = SocketAddr::new(host.parse().expect("an address"), open);
        let here = if family { "127.0.0.1" } else { "[::1]" };
        assert!(url.contains(&format!("http://{here}:{open} ")), "{url}");
        assert!(
            reach.contains(&format!("listening on {listening} (every interface)"))
                && reach.contains("API_KEYS is unset"),
            "{reach}"
        );
        #[cfg(target_os = "linux")]
        assert_eq!(listening_on(open), [listening]);
        for ip in wanted {
            let at = SocketAddr::new(*ip, open);
            let health = get_json(&http, format!("http://{at}/health")).await;
            assert_eq!(health["function"], "local", "GET http://{at}/health");
        }
    }
}

#[tokio::test]
async fn a_host_that_is_no_ip_address_stops_local_before_it_opens_anything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = Command::new(env!("CARGO_BIN_EXE_local"))
        .env_clear()
        .env("ENV_FILE", "off")
        .env("PORT", agent_core::testing::free_port().to_string())
        .env("HOST", "my-laptop")
        .current_dir(dir.path())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("local stops at once")
        .expect("run local");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: HOST=\"my-laptop\" is not valid: expected an IP address"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(!dir.path().join(".agent-data").exists(), "the store was opened");
}
