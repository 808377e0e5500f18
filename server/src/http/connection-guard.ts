import type { IncomingMessage, Server } from 'node:http';
import type { Socket } from 'node:net';

export interface ConnectionLimits {
  /** Open connections at most. */
  maxConnections: number;
  /** Open connections per client address at most; 0 for none. */
  maxPerAddress: number;
  /** A request body that sends nothing for this long is dropped. */
  bodyIdleMs: number;
}

export interface ConnectionGuardStats {
  open: number;
  /** Connections closed at once for being over a cap, since start. */
  refused: number;
  /** Connections closed because their request body stalled, since start. */
  stalled: number;
}

/**
 * Keeps slow or numerous connections from starving everyone else: caps connections in all and per
 * client address (counted on the server's `connection` event; one over the cap is destroyed before
 * a byte is read), and drops a connection whose request body stops arriving.
 *
 * The body watch looks at the socket's byte count once a second instead of listening to the body,
 * so it works for every route, including those that never read the body, without taking it from them.
 */
export class ConnectionGuard {
  readonly #perAddress = new Map<string, number>();
  // Per connection, the request whose body is still arriving. Keyed by socket, not request: a
  // request answered early (413, 401) emits `close` while its body is still being read and dropped.
  readonly #receiving = new Map<Socket, { req: IncomingMessage; bytes: number; since: number }>();
  readonly #timer: NodeJS.Timeout;
  #open = 0;
  #refused = 0;
  #stalled = 0;

  constructor(
    server: Server,
    private readonly limits: () => ConnectionLimits,
    private readonly onRefuse: (reason: 'max_connections' | 'max_connections_per_address' | 'body_idle', address: string) => void = () => undefined,
  ) {
    server.on('connection', (socket: Socket) => this.#admit(socket));
    // TLS servers emit `connection` for the raw TCP socket too, before the handshake: the cap holds there.
    server.on('request', (req: IncomingMessage) => {
      // Only a request with a body (a length, or chunks) can stall sending it.
      if (req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined) return;
      this.#receiving.set(req.socket, { req, bytes: req.socket.bytesRead, since: Date.now() });
    });
    this.#timer = setInterval(() => this.#sweep(Date.now()), 1000);
    this.#timer.unref();
  }

  stats(): ConnectionGuardStats {
    return { open: this.#open, refused: this.#refused, stalled: this.#stalled };
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  #admit(socket: Socket): void {
    const { maxConnections, maxPerAddress } = this.limits();
    const address = socket.remoteAddress ?? 'unknown';
    const fromAddress = this.#perAddress.get(address) ?? 0;
    const over = this.#open >= maxConnections ? 'max_connections' : maxPerAddress > 0 && fromAddress >= maxPerAddress ? 'max_connections_per_address' : undefined;
    if (over) {
      this.#refused++;
      socket.destroy();
      this.onRefuse(over, address);
      return;
    }
    this.#open++;
    this.#perAddress.set(address, fromAddress + 1);
    socket.once('close', () => {
      this.#receiving.delete(socket);
      this.#open--;
      const left = (this.#perAddress.get(address) ?? 1) - 1;
      if (left > 0) this.#perAddress.set(address, left);
      else this.#perAddress.delete(address);
    });
  }

  #sweep(now: number): void {
    const { bodyIdleMs } = this.limits();
    for (const [socket, watch] of this.#receiving) {
      if (watch.req.complete || socket.destroyed) {
        this.#receiving.delete(socket);
        continue;
      }
      const bytes = socket.bytesRead;
      if (bytes !== watch.bytes) {
        watch.bytes = bytes;
        watch.since = now;
      } else if (now - watch.since >= bodyIdleMs) {
        this.#receiving.delete(socket);
        this.#stalled++;
        this.onRefuse('body_idle', socket.remoteAddress ?? 'unknown');
        socket.destroy();
      }
    }
  }
}
