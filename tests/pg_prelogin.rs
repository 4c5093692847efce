//! The per-address cap on connections still logging in
//! (`[limits] max_prelogin_per_address`), through the real proxy: idle
//! sockets from one address that never send a startup packet do not keep a
//! real login from another address out, and the one over the cap is refused
//! at once with FATAL 53300.

mod support;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use support::{PgServer, Sqlgate, SqlgateConfig};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

const AGENT: &str = "bot";
const AGENT_PW: &str = "bot-secret";
const CAP: usize = 4;
/// Small, so that the idle sockets would fill it without the cap.
const MAX_CONNECTIONS: usize = 12;

fn config(port: u16, db: &str) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    c.host("127.0.0.1")
        .port(port)
        .user(AGENT)
        .password(AGENT_PW)
        .dbname(db)
        .connect_timeout(Duration::from_secs(5));
    c
}

/// Logs in through sqlgate from source address `from` and runs `SELECT 1`.
async fn login_from(
    from: &str,
    gate: SocketAddr,
    db: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let tcp = socket.connect(gate).await.unwrap();
    let (client, conn) = config(gate.port(), db).connect_raw(tcp, NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// What an idle socket gets within `wait`: `Some(bytes)` if sqlgate sent
/// something and closed, `None` if it is still waiting for a startup packet.
fn answer(s: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => Some(got),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            assert!(got.is_empty(), "sqlgate wrote to a held socket: {got:?}");
            None
        }
        Err(e) => panic!("reading an idle socket: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_from_one_address_do_not_starve_others() {
    let pg = PgServer::shared();
    let db = pg.unique_database("prelogin");
    let cfg = SqlgateConfig::for_pg(pg, &db)
        .agent(AGENT, AGENT_PW, &["agents"])
        .extra(&format!(
            "[limits]\nmax_connections = {MAX_CONNECTIONS}\nmax_prelogin_per_address = {CAP}\n"
        ));
    let gate = Sqlgate::start_with(&cfg);
    let addr: SocketAddr = cfg.listen_addr().parse().unwrap();

    // Far more idle sockets from 127.0.0.1 than max_connections; none sends a byte.
    // (The readiness probe's own connection may still hold a place: wait for it.)
    std::thread::sleep(Duration::from_millis(300));
    let opened = Instant::now();
    let mut idle: Vec<TcpStream> = (0..MAX_CONNECTIONS * 3)
        .map(|_| TcpStream::connect(addr).expect("connect an idle socket"))
        .collect();

    // A real login from another address goes through at once.
    let t = Instant::now();
    let client = login_from("127.0.0.2", addr, &db)
        .await
        .unwrap_or_else(|e| panic!("login from 127.0.0.2: {e}\n{}", gate.log()));
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "login took {:?}",
        t.elapsed()
    );

    // Exactly CAP idle sockets are held; every other one was told why and closed.
    let mut held = Vec::new();
    for (i, s) in idle.iter_mut().enumerate() {
        match answer(s, Duration::from_millis(300)) {
            None => held.push(i),
            Some(bytes) => {
                assert_eq!(
                    bytes.first(),
                    Some(&b'E'),
                    "not an ErrorResponse: {bytes:?}"
                );
                let text = String::from_utf8_lossy(&bytes);
                assert!(text.contains("C53300") && text.contains("SFATAL"), "{text}");
            }
        }
    }
    assert_eq!(held.len(), CAP, "held sockets: {held:?}");

    // A real client over the cap from the same address learns why.
    let Err(e) = login_from("127.0.0.1", addr, &db).await else {
        panic!("a login over the cap from 127.0.0.1 was let in");
    };
    assert_eq!(e.code(), Some(&SqlState::TOO_MANY_CONNECTIONS), "{e}");
    assert!(
        opened.elapsed() < Duration::from_secs(9),
        "the checks above must finish inside the 10 s login timeout ({:?})",
        opened.elapsed()
    );

    // Closing the idle sockets gives the address its places back.
    drop(idle);
    let mut again = None;
    for _ in 0..50 {
        match login_from("127.0.0.1", addr, &db).await {
            Ok(c) => {
                again = Some(c);
                break;
            }
            Err(e) if e.code() == Some(&SqlState::TOO_MANY_CONNECTIONS) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("login from 127.0.0.1 after closing: {e}\n{}", gate.log()),
        }
    }
    let again = again.expect("127.0.0.1 can log in once its idle sockets are gone");
    again.simple_query("SELECT 1").await.unwrap();
    // Logged-in sessions do not count against the cap.
    let mut sessions = vec![client, again];
    for _ in 0..CAP {
        sessions.push(login_from("127.0.0.1", addr, &db).await.unwrap());
    }
    assert_eq!(sessions.len(), CAP + 2);
}
