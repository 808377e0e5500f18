import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../../test/helpers/server.js';

let dir: string;
let certPath: string;
let keyPath: string;
let ca: Buffer;

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'inferno-tls-'));
  certPath = path.join(dir, 'cert.pem');
  keyPath = path.join(dir, 'key.pem');
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1'],
    { stdio: 'pipe' },
  );
  ca = readFileSync(certPath);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function httpsGet(url: string, options: https.RequestOptions = {}): Promise<{ status: number; body: string; protocol: string | null }> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca, agent: false, ...options }, (res) => {
      const protocol = (res.socket as tls.TLSSocket).getProtocol?.() ?? null;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body, protocol }));
    });
    req.on('error', reject);
  });
}

type Handshake = { ok: true; protocol: string | null } | { ok: false; error: NodeJS.ErrnoException };

/** A bare TLS handshake with a pinned protocol version. */
function handshake(port: number, version: tls.SecureVersion, extra: tls.ConnectionOptions = {}): Promise<Handshake> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca, minVersion: version, maxVersion: version, ...extra }, () => {
      const protocol = socket.getProtocol();
      socket.end();
      resolve({ ok: true, protocol });
    });
    socket.on('error', (error) => resolve({ ok: false, error }));
  });
}

/** The server's "protocol version" alert (TLS alert 70), as OpenSSL reports it on the client. */
function expectServerProtocolAlert(result: Handshake) {
  expect(result.ok).toBe(false);
  if (result.ok) return;
  const text = `${result.error.code} ${result.error.message}`;
  // Received from the peer: not the client refusing to offer the version itself
  // (which would be ERR_SSL_NO_PROTOCOLS_AVAILABLE / "unsupported protocol").
  expect(text).toMatch(/ALERT_PROTOCOL_VERSION|alert protocol version/i);
  expect(text).not.toMatch(/NO_PROTOCOLS_AVAILABLE|UNSUPPORTED_PROTOCOL/i);
}

describe('TLS (default minimum TLSv1.2)', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ settings: { 'server.tls.cert': certPath, 'server.tls.key': keyPath } });
  });
  afterAll(() => server.close());

  it('serves HTTPS that verifies against the configured certificate', async () => {
    expect(server.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const res = await httpsGet(`${server.url}/health`);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body).status).toBe('ok');
  });

  it('a client that does not trust the certificate refuses it (no silent downgrade to trust)', async () => {
    await expect(httpsGet(`${server.url}/health`, { ca: undefined })).rejects.toMatchObject({ code: 'DEPTH_ZERO_SELF_SIGNED_CERT' });
  });

  it('does not answer plain HTTP on the TLS port', async () => {
    const outcome = await fetch(`http://127.0.0.1:${server.port}/health`).then(
      (res) => res.status,
      () => 'refused',
    );
    expect(outcome === 'refused' || (typeof outcome === 'number' && outcome >= 400)).toBe(true);
  });

  it('control: this TLS 1.1 client does complete a handshake with a server that allows TLS 1.1', async () => {
    const permissive = tls.createServer({ key: readFileSync(keyPath), cert: ca, minVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' }, (s) => s.end());
    await new Promise<void>((resolve) => permissive.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = permissive.address() as import('node:net').AddressInfo;
      expect(await handshake(port, 'TLSv1.1', { ciphers: 'DEFAULT@SECLEVEL=0' })).toEqual({ ok: true, protocol: 'TLSv1.1' });
    } finally {
      permissive.close();
    }
  });

  it('refuses a TLS 1.1 client: the server sends a protocol_version alert', async () => {
    // SECLEVEL=0 lets this OpenSSL offer TLS 1.1 at all, so the refusal has to come from the server.
    expectServerProtocolAlert(await handshake(server.port, 'TLSv1.1', { ciphers: 'DEFAULT@SECLEVEL=0' }));
  });

  it('refuses a TLS 1.0 client', async () => {
    expectServerProtocolAlert(await handshake(server.port, 'TLSv1', { ciphers: 'DEFAULT@SECLEVEL=0' }));
  });

  it('TLS 1.2 takes forward-secret AEAD suites only: a static-RSA CBC client (AES128-SHA) is refused', async () => {
    const legacy = await handshake(server.port, 'TLSv1.2', { ciphers: 'AES128-SHA' });
    expect(legacy.ok).toBe(false);
    if (!legacy.ok) expect(`${legacy.error.code} ${legacy.error.message}`).toMatch(/HANDSHAKE_FAILURE|handshake failure|NO_SHARED_CIPHER/i);
    for (const cipher of ['AES256-GCM-SHA384', 'ECDHE-RSA-AES128-SHA']) expect((await handshake(server.port, 'TLSv1.2', { ciphers: cipher })).ok, cipher).toBe(false);
    const modern = await handshake(server.port, 'TLSv1.2', { ciphers: 'ECDHE-RSA-AES128-GCM-SHA256' });
    expect(modern).toEqual({ ok: true, protocol: 'TLSv1.2' });
    expect((await handshake(server.port, 'TLSv1.2', { ciphers: 'ECDHE-RSA-CHACHA20-POLY1305' })).ok).toBe(true);
  });

  it('sends Strict-Transport-Security over HTTPS', async () => {
    const headers = await new Promise<import('node:http').IncomingHttpHeaders>((resolve, reject) => {
      https.get(`${server.url}/health`, { ca, agent: false }, (res) => {
        res.resume();
        resolve(res.headers);
      }).on('error', reject);
    });
    expect(headers['strict-transport-security']).toBe('max-age=31536000');
  });

  it('accepts TLS 1.2 and TLS 1.3 clients', async () => {
    expect(await handshake(server.port, 'TLSv1.2')).toEqual({ ok: true, protocol: 'TLSv1.2' });
    expect(await handshake(server.port, 'TLSv1.3')).toEqual({ ok: true, protocol: 'TLSv1.3' });
    expect((await httpsGet(`${server.url}/health`, { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' })).protocol).toBe('TLSv1.2');
  });
});

describe('TLS with [server.tls] min_version = TLSv1.3', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ settings: { 'server.tls.cert': certPath, 'server.tls.key': keyPath, 'server.tls.min_version': 'TLSv1.3' } });
  });
  afterAll(() => server.close());

  it('refuses a TLS 1.2 client', async () => {
    expectServerProtocolAlert(await handshake(server.port, 'TLSv1.2'));
  });

  it('accepts a TLS 1.3 client', async () => {
    expect(await handshake(server.port, 'TLSv1.3')).toEqual({ ok: true, protocol: 'TLSv1.3' });
    expect((await httpsGet(`${server.url}/health`)).status).toBe(200);
  });
});
