//! A TLS echo server and its client in one program, on trellis's sockets through
//! futures-rustls (which needs only the `futures-io` impls of `TcpStream`).
//!
//! - A certificate authority and a certificate for `localhost` are generated at start
//!   (rcgen); the server presents the certificate, the client trusts only that CA.
//! - The server accepts connections in a nursery, one child per connection; a failed
//!   handshake or a broken connection is logged and ends that child only.
//! - Two clients connect in turn, send messages (one of 64 KB, four TLS records), check
//!   every byte of the echo, and close, each within a deadline (`fail_after`); then the
//!   server is cancelled and the program ends.
//!
//! Run it with `cargo run -p trellis-integration --example tls_echo`.
//! `integration/tests/examples.rs` runs it and checks what it reports.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use futures_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use futures_rustls::{TlsAcceptor, TlsConnector};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use trellis::net::{TcpListener, TcpStream};

/// The most one client's session may take.
const CLIENT_DEADLINE: Duration = Duration::from_secs(5);

/// What the program did, line by line (printed as it goes, and kept for the test).
#[derive(Debug, Default)]
pub(crate) struct Log {
    lines: RefCell<Vec<String>>,
}

impl Log {
    fn line(&self, line: String) {
        println!("{line}");
        self.lines.borrow_mut().push(line);
    }

    /// Every line so far.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines.borrow().clone()
    }
}

/// A CA, a certificate for `localhost` that it signs, and the TLS configurations of both
/// sides: the server's with that certificate, the client's trusting that CA only.
fn tls_configs() -> Result<(TlsAcceptor, TlsConnector), Box<dyn std::error::Error>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tls_echo example CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate()?;
    let server_cert =
        CertificateParams::new(vec!["localhost".to_string()])?.signed_by(&server_key, &ca)?;
    let chain: Vec<CertificateDer<'static>> =
        vec![server_cert.der().clone(), ca_cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;

    let mut roots = RootCertStore::empty();
    roots.add(ca_cert.der().clone())?;
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok((
        TlsAcceptor::from(Arc::new(server)),
        TlsConnector::from(Arc::new(client)),
    ))
}

/// Serves TLS echo on `listener` until cancelled: one child per connection.
async fn serve(listener: &TcpListener, acceptor: &TlsAcceptor, log: &Log) -> io::Result<()> {
    log.line(format!("server: listening on {}", listener.local_addr()?));
    trellis::nursery(async |conns| -> io::Result<()> {
        loop {
            let (tcp, peer) = listener.accept().await?;
            conns.spawn(async move {
                match echo(tcp, acceptor).await {
                    Ok(bytes) => log.line(format!("server: {peer} closed after {bytes} bytes")),
                    Err(e) => log.line(format!("server: {peer} failed: {e}")),
                }
            });
        }
    })
    .await
    .map_err(|group| io::Error::other(format!("the accept loop failed: {group}")))
}

/// One connection: the TLS handshake, then every byte back until the client closes.
async fn echo(tcp: TcpStream, acceptor: &TlsAcceptor) -> io::Result<u64> {
    let mut tls = acceptor.accept(tcp).await?;
    let mut buf = vec![0; 16 * 1024];
    let mut echoed = 0;
    loop {
        let n = tls.read(&mut buf).await?;
        if n == 0 {
            tls.close().await?; // the client sent close_notify: answer with ours
            return Ok(echoed);
        }
        tls.write_all(&buf[..n]).await?;
        tls.flush().await?; // rustls may hold records the socket did not take yet
        echoed += n as u64;
    }
}

/// A client: connects to `addr` as `localhost`, sends each message and checks its echo,
/// then closes. Returns the bytes echoed.
async fn client(
    id: u32,
    addr: SocketAddr,
    connector: &TlsConnector,
    messages: &[Vec<u8>],
    log: &Log,
) -> io::Result<usize> {
    let tcp = TcpStream::connect(addr).await?;
    let localhost = ServerName::try_from("localhost").expect("a valid DNS name");
    let mut tls = connector.connect(localhost, tcp).await?;
    let (_, session) = tls.get_ref();
    log.line(format!(
        "client {id}: connected with {:?}, {:?}",
        session.protocol_version().expect("after the handshake"),
        session
            .negotiated_cipher_suite()
            .expect("after the handshake")
            .suite()
    ));
    let mut total = 0;
    for msg in messages {
        // Send one message, then read its echo: each fits in the sockets' buffers, so
        // writing all of it before reading cannot stall (for an endless stream, read and
        // write in two tasks after `split`).
        tls.write_all(msg).await?;
        tls.flush().await?;
        let mut echoed = vec![0; msg.len()];
        tls.read_exact(&mut echoed).await?;
        if echoed != *msg {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the echo of a {}-byte message differs", msg.len()),
            ));
        }
        log.line(format!("client {id}: {} bytes echoed intact", msg.len()));
        total += msg.len();
    }
    // Send close_notify, then wait for the server's: a clean end on both sides.
    tls.close().await?;
    if tls.read(&mut [0; 1]).await? != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the server sent more than the echo",
        ));
    }
    log.line(format!("client {id}: closed, and so did the server"));
    Ok(total)
}

/// The messages each client sends: two lines and 64 KB of patterned bytes.
pub(crate) fn messages() -> Vec<Vec<u8>> {
    let big = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    vec![
        b"hello over TLS\n".to_vec(),
        b"a second line\n".to_vec(),
        big,
    ]
}

/// The whole program: the server, two clients in turn, then the server's cancellation.
/// Returns the bytes each client had echoed.
pub(crate) fn run(log: &Log) -> Result<Vec<usize>, Box<dyn std::error::Error>> {
    let (acceptor, connector) = tls_configs()?;
    let messages = messages();
    let echoed = trellis::run(async {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        trellis::nursery(async |n| {
            let server = n.spawn(serve(&listener, &acceptor, log));
            let mut echoed = Vec::new();
            for id in 1..=2 {
                // A deadline per client, so that a server that stops answering is an
                // error rather than a hang (here it answers in milliseconds).
                let session = client(id, addr, &connector, &messages, log);
                let done = trellis::fail_after(CLIENT_DEADLINE, session).await;
                echoed.push(done.map_err(|e| io::Error::new(io::ErrorKind::TimedOut, e))??);
            }
            server.cancel();
            log.line("server: cancelled".to_string());
            Ok::<_, io::Error>(echoed)
        })
        .await
        .map_err(|group| io::Error::other(group.to_string()))
    })?;
    Ok(echoed)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let log = Log::default();
    let echoed = run(&log)?;
    let events = log.lines().len();
    println!("done: {events} events; the clients had {echoed:?} bytes echoed");
    Ok(())
}
