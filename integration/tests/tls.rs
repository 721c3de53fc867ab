//! TLS on trellis's sockets through futures-rustls, which needs nothing from trellis but the
//! `futures-io` impls of `TcpStream`: an echo with every byte checked (a message larger
//! than a TLS record among them), TLS inside TLS through a proxy that terminates the outer
//! session, handshakes that fail (untrusted CA, wrong name) as errors rather than hangs,
//! and a TLS read cancelled by a timeout, with a TLS record half arrived, then retried.
//!
//! Certificates are made at test time with rcgen: one CA per test, and server certificates
//! it signs. Everything runs on loopback, on the autojump clock, under the watchdog.

mod common;

use std::cell::Cell;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures_rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use futures_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use futures_rustls::{TlsAcceptor, TlsConnector};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use trellis::net::{TcpListener, TcpStream};

use common::{HANG_LIMIT, run_virtual, watchdog};

/// rustls's `ring` provider, named explicitly (no process-wide default is installed).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate authority made for one test.
struct Ca {
    cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

/// A server's certificate chain and key, signed by a [`Ca`].
struct ServerCert {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("a CA key");
        let cert = params.self_signed(&key).expect("the CA's certificate");
        Ca {
            cert: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for the DNS name `name`, signed by this CA.
    fn issue(&self, name: &str) -> ServerCert {
        let key = KeyPair::generate().expect("a server key");
        let cert = CertificateParams::new(vec![name.to_string()])
            .expect("server params")
            .signed_by(&key, &self.issuer)
            .expect("the server's certificate");
        ServerCert {
            chain: vec![cert.der().clone(), self.cert.clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }

    /// A client that trusts this CA only.
    fn connector(&self) -> TlsConnector {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.cert.clone())
            .expect("the CA is a valid root");
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }
}

impl ServerCert {
    /// A server config for this certificate that sends no session tickets (so that nothing
    /// arrives after the handshake unless the test asks for it).
    fn acceptor(&self) -> TlsAcceptor {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .expect("a valid certificate and key");
        config.send_tls13_tickets = 0;
        TlsAcceptor::from(Arc::new(config))
    }
}

/// Connects with `TCP_NODELAY`, as every socket here has. Without it a small TLS record
/// written right after another (the client's `Finished`, then its first data) waits in the
/// kernel for the peer's delayed ACK, up to 40 ms of real time in which no socket is
/// readable: the autojump clock sees every task blocked and jumps to the next timer, as if
/// the record were late.
async fn connect(addr: std::net::SocketAddr) -> io::Result<TcpStream> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// Accepts one connection, with `TCP_NODELAY` (see [`connect`]).
async fn accept(listener: &TcpListener) -> io::Result<TcpStream> {
    let (tcp, _) = listener.accept().await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

fn name(dns: &str) -> ServerName<'static> {
    ServerName::try_from(dns.to_string()).expect("a valid DNS name")
}

/// Echoes every byte until the peer closes its side (TLS `close_notify`), then closes.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> io::Result<u64> {
    let mut buf = vec![0; 32 * 1024];
    let mut echoed = 0;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            stream.close().await?;
            return Ok(echoed);
        }
        stream.write_all(&buf[..n]).await?;
        // futures-rustls may keep records that the socket did not take yet: flush them.
        stream.flush().await?;
        echoed += n as u64;
    }
}

/// Message `i` of an echo session: `len` bytes that differ from message to message.
fn message(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j * 7 + j / 251) as u8).collect()
}

/// The messages the echo tests send: small ones, one of exactly a TLS record's maximum
/// plaintext (16 KiB), and one of 100 KB (seven records).
fn messages() -> Vec<Vec<u8>> {
    [5, 1, 1200, 16 * 1024, 100_000, 3]
        .iter()
        .enumerate()
        .map(|(i, &len)| message(i, len))
        .collect()
}

/// Sends `messages` on `stream` while reading the echo (concurrently, so that a message
/// larger than the socket buffers cannot stall both sides), checks every byte, then closes
/// and checks that the echo side closes too. Returns the bytes echoed.
async fn echo_client<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    messages: &[Vec<u8>],
) -> io::Result<usize> {
    let (mut reader, mut writer) = stream.split();
    let total = trellis::nursery(async |n| {
        n.spawn(async {
            for msg in messages {
                writer.write_all(msg).await?;
                writer.flush().await?;
            }
            Ok::<(), io::Error>(())
        });
        let mut total = 0;
        for (i, msg) in messages.iter().enumerate() {
            let mut got = vec![0; msg.len()];
            reader.read_exact(&mut got).await?;
            assert!(
                got == *msg,
                "message {i} ({} bytes) came back different",
                msg.len()
            );
            total += got.len();
        }
        Ok(total)
    })
    .await
    .map_err(|group| io::Error::other(format!("the echo client failed: {group:?}")))?;
    let mut stream = reader.reunite(writer).expect("the halves of one stream");
    stream.close().await?;
    let mut rest = [0; 1];
    let n = stream.read(&mut rest).await?;
    assert_eq!(n, 0, "the echo side closes after the client did");
    Ok(total)
}

/// A TLS echo server on `listener` for one connection: returns the bytes echoed.
async fn serve_echo_once(listener: &TcpListener, acceptor: &TlsAcceptor) -> io::Result<u64> {
    let tcp = accept(listener).await?;
    echo(acceptor.accept(tcp).await?).await
}

#[test]
fn a_tls_echo_over_a_trellis_tcp_stream_returns_every_byte() {
    watchdog(HANG_LIMIT, || {
        let ca = Ca::new("trellis test CA");
        let server = ca.issue("echo.test");
        let sent: usize = messages().iter().map(Vec::len).sum();
        let (echoed, received) = run_virtual(async {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let addr = listener.local_addr()?;
            let acceptor = server.acceptor();
            trellis::nursery(async |n| {
                let echoed = n.spawn(serve_echo_once(&listener, &acceptor));
                let tcp = connect(addr).await?;
                let tls = ca.connector().connect(name("echo.test"), tcp).await?;
                let received = echo_client(tls, &messages()).await?;
                Ok((echoed.await.expect("the server ends"), received))
            })
            .await
            .map_err(|group| io::Error::other(format!("{group:?}")))
        })
        .expect("the echo session succeeds");
        assert_eq!(received, sent);
        assert_eq!(
            echoed, sent as u64,
            "the server echoed what the client sent"
        );
    });
}

/// Copies `from` to `to` until `from` ends, then closes `to`; appends what it copied to
/// `seen`. A proxy's half.
async fn pipe<R, W>(mut from: R, mut to: W, seen: &std::cell::RefCell<Vec<u8>>) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.close().await;
        }
        seen.borrow_mut().extend_from_slice(&buf[..n]);
        to.write_all(&buf[..n]).await?;
        to.flush().await?;
    }
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn tls_inside_tls_through_a_proxy_that_terminates_the_outer_session() {
    watchdog(HANG_LIMIT, || {
        let ca = Ca::new("trellis test CA");
        let proxy_cert = ca.issue("proxy.test");
        let echo_cert = ca.issue("echo.test");
        let marker = b"inner plaintext that the proxy must not see".to_vec();
        let mut msgs = messages();
        msgs.insert(1, marker.clone());
        let sent: usize = msgs.iter().map(Vec::len).sum();
        let to_backend = std::cell::RefCell::new(Vec::new());
        let to_client = std::cell::RefCell::new(Vec::new());
        let (received, outer_peer, inner_peer) = run_virtual(async {
            let backend = TcpListener::bind("127.0.0.1:0")?;
            let backend_addr = backend.local_addr()?;
            let proxy = TcpListener::bind("127.0.0.1:0")?;
            let proxy_addr = proxy.local_addr()?;
            let echo_acceptor = echo_cert.acceptor();
            let proxy_acceptor = proxy_cert.acceptor();
            trellis::nursery(async |n| {
                n.spawn(serve_echo_once(&backend, &echo_acceptor));
                // The proxy: terminates the outer TLS session, connects to the backend and
                // copies bytes both ways (the inner session's records, opaque to it).
                n.spawn(async {
                    let tcp = accept(&proxy).await?;
                    let outer = proxy_acceptor.accept(tcp).await?;
                    let upstream = connect(backend_addr).await?;
                    let (outer_rd, outer_wr) = outer.split();
                    let (up_rd, up_wr) = upstream.split();
                    trellis::nursery(async |p| {
                        p.spawn(pipe(outer_rd, up_wr, &to_backend));
                        p.spawn(pipe(up_rd, outer_wr, &to_client));
                        Ok::<(), io::Error>(())
                    })
                    .await
                    .map_err(|group| io::Error::other(format!("the proxy failed: {group:?}")))
                });
                let tcp = connect(proxy_addr).await?;
                let outer = ca.connector().connect(name("proxy.test"), tcp).await?;
                let outer_peer = outer.get_ref().1.peer_certificates().map(<[_]>::to_vec);
                let inner = ca.connector().connect(name("echo.test"), outer).await?;
                let inner_peer = inner.get_ref().1.peer_certificates().map(<[_]>::to_vec);
                let received = echo_client(inner, &msgs).await?;
                Ok((received, outer_peer, inner_peer))
            })
            .await
            .map_err(|group| io::Error::other(format!("{group:?}")))
        })
        .expect("the tunnelled echo session succeeds");
        assert_eq!(received, sent);
        assert_eq!(
            outer_peer,
            Some(proxy_cert.chain.clone()),
            "the outer peer is the proxy"
        );
        assert_eq!(
            inner_peer,
            Some(echo_cert.chain.clone()),
            "the inner peer is the echo server"
        );
        let (up, down) = (to_backend.into_inner(), to_client.into_inner());
        assert!(
            up.len() > sent && down.len() > sent,
            "the proxy carried every record"
        );
        assert!(
            !contains(&up, &marker) && !contains(&down, &marker),
            "the proxy saw only the inner session's ciphertext"
        );
    });
}

/// Runs a server with `server_cert` and a client that connects with `connector` to `dns`;
/// returns both sides' handshake results.
fn handshake(
    server_cert: &ServerCert,
    connector: TlsConnector,
    dns: &str,
) -> (io::Result<()>, io::Result<()>) {
    let acceptor = server_cert.acceptor();
    run_virtual(async {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback listener");
        let addr = listener.local_addr().expect("its address");
        trellis::nursery(async |n| {
            let server = n.spawn(async {
                let accepted = async {
                    let tcp = accept(&listener).await?;
                    acceptor.accept(tcp).await.map(drop)
                };
                Ok::<_, std::convert::Infallible>(accepted.await)
            });
            let client = async {
                let tcp = connect(addr).await?;
                connector.connect(name(dns), tcp).await.map(drop)
            }
            .await;
            Ok::<_, std::convert::Infallible>((server.await.expect("the server ends"), client))
        })
        .await
        .expect("the handshakes return their errors")
    })
}

/// The rustls error inside an `io::Error` from futures-rustls.
fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

#[test]
fn a_handshake_with_an_untrusted_ca_fails_on_both_sides_without_hanging() {
    watchdog(HANG_LIMIT, || {
        let server_ca = Ca::new("the server's CA");
        let other_ca = Ca::new("a CA the client trusts");
        let (server, client) = handshake(
            &server_ca.issue("echo.test"),
            other_ca.connector(),
            "echo.test",
        );
        let client = client.expect_err("the client rejects a certificate of an unknown CA");
        assert_eq!(client.kind(), io::ErrorKind::InvalidData, "{client}");
        assert!(
            matches!(
                rustls_error(&client),
                Some(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::UnknownIssuer
                ))
            ),
            "{client:?}"
        );
        let server = server.expect_err("the server hears the client's alert");
        assert!(
            matches!(rustls_error(&server), Some(rustls::Error::AlertReceived(_))),
            "{server:?}"
        );
    });
}

#[test]
fn a_handshake_with_the_wrong_server_name_fails_on_both_sides_without_hanging() {
    watchdog(HANG_LIMIT, || {
        let ca = Ca::new("trellis test CA");
        let (server, client) = handshake(&ca.issue("echo.test"), ca.connector(), "other.test");
        let client = client.expect_err("the certificate does not name other.test");
        assert_eq!(client.kind(), io::ErrorKind::InvalidData, "{client}");
        assert!(
            matches!(
                rustls_error(&client),
                Some(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForName
                        | rustls::CertificateError::NotValidForNameContext { .. }
                ))
            ),
            "{client:?}"
        );
        assert!(server.is_err(), "the server's accept fails too: {server:?}");
    });
}

/// The cancel-safety of futures-rustls reads on trellis's sockets: a read cut off by a
/// timeout while a TLS record is half arrived (its first bytes already taken from the
/// socket into rustls's buffer) loses nothing; the retried reads get every byte.
///
/// A relay between client and server forwards the server's first data record in two
/// parts, the second after two (virtual) seconds; the client's first read has a one-second
/// timeout.
#[test]
fn a_tls_read_cancelled_by_a_timeout_midway_through_a_record_loses_nothing() {
    watchdog(HANG_LIMIT, || {
        let ca = Ca::new("trellis test CA");
        let server_cert = ca.issue("echo.test");
        let payload = message(7, 40_000);
        let stall = Cell::new(false);
        let forwarded_before_stall = Cell::new(0);
        let (first, rest) = run_virtual(async {
            let server = TcpListener::bind("127.0.0.1:0")?;
            let server_addr = server.local_addr()?;
            let relay = TcpListener::bind("127.0.0.1:0")?;
            let relay_addr = relay.local_addr()?;
            let acceptor = server_cert.acceptor();
            trellis::nursery(async |n| {
                n.spawn(async {
                    let tcp = accept(&server).await?;
                    let mut tls = acceptor.accept(tcp).await?;
                    let mut go = [0; 2];
                    tls.read_exact(&mut go).await?;
                    tls.write_all(&payload).await?;
                    tls.flush().await?;
                    tls.close().await
                });
                // The relay: client -> server as is; server -> client as is, except the
                // first chunk after `stall` is set, cut after its first 100 bytes.
                n.spawn(async {
                    let client = accept(&relay).await?;
                    let upstream = connect(server_addr).await?;
                    trellis::nursery(async |r| {
                        r.spawn(async {
                            let mut buf = vec![0; 4096];
                            loop {
                                let n = client.read(&mut buf).await?;
                                if n == 0 {
                                    return upstream.shutdown(std::net::Shutdown::Write);
                                }
                                upstream.write_all(&buf[..n]).await?;
                            }
                        });
                        r.spawn(async {
                            let mut buf = vec![0; 64 * 1024];
                            let mut stalled = false;
                            loop {
                                let n = upstream.read(&mut buf).await?;
                                if n == 0 {
                                    return client.shutdown(std::net::Shutdown::Write);
                                }
                                if stall.get() && !stalled && n > 100 {
                                    stalled = true;
                                    client.write_all(&buf[..100]).await?;
                                    forwarded_before_stall.set(100);
                                    trellis::sleep(Duration::from_secs(2)).await;
                                    client.write_all(&buf[100..n]).await?;
                                } else {
                                    client.write_all(&buf[..n]).await?;
                                }
                            }
                        });
                        Ok::<(), io::Error>(())
                    })
                    .await
                    .map_err(|group| io::Error::other(format!("the relay failed: {group:?}")))
                });
                let tcp = connect(relay_addr).await?;
                let mut tls = ca.connector().connect(name("echo.test"), tcp).await?;
                stall.set(true);
                tls.write_all(b"go").await?;
                tls.flush().await?;
                let mut got = vec![0; payload.len()];
                let start = trellis::now();
                let first =
                    trellis::move_on_after(Duration::from_secs(1), tls.read(&mut got)).await;
                let first = (
                    first.transpose()?,
                    trellis::now() - start,
                    forwarded_before_stall.get(),
                );
                let mut filled = first.0.unwrap_or(0);
                while filled < got.len() {
                    match tls.read(&mut got[filled..]).await? {
                        0 => break,
                        n => filled += n,
                    }
                }
                assert!(
                    got == payload,
                    "the retried reads return the payload intact"
                );
                Ok((first, filled))
            })
            .await
            .map_err(|group| io::Error::other(format!("{group:?}")))
        })
        .expect("the session succeeds");
        assert_eq!(
            first,
            (None, Duration::from_secs(1), 100),
            "the first read, with the record's first 100 bytes arrived, waits for the rest \
             and is cut off by its timeout"
        );
        assert_eq!(rest, payload.len(), "the retried reads got every byte");
    });
}
