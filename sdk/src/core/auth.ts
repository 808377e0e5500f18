import type { Auth } from '../gen/client/index.js';
import type { TokenResponse } from '../gen/types.gen.js';
import { abortable } from './abort.js';
import type { LoginCredentials, RequestOptions } from './options.js';
import type { WithResponse } from './response.js';

/** The credential one request goes out with. */
export interface Credential {
  /** `apiKey` goes out as `X-API-Key`, `bearer` as `Authorization: Bearer`. */
  readonly kind: 'apiKey' | 'bearer';
  /** The key or token. */
  readonly value: string;
  /** Whether the client got it by logging in, so that it may log in again after a 401. */
  readonly renewable: boolean;
}

/** Sends `POST /api/v1/auth/login`; the transport provides it. */
export type LoginFunction = (credentials: LoginCredentials, options?: RequestOptions) => Promise<WithResponse<TokenResponse>>;

/** Per-request credentials, which win over the session's. */
export interface CredentialOverride {
  apiKey?: string | undefined;
  token?: string | undefined;
}

// A token this close to its expiry is renewed before use rather than sent to fail.
const EXPIRY_MARGIN_MS = 5_000;

/**
 * The credentials of one client: a fixed API key or token, or a username and password that it
 * exchanges for a token when one is first needed and again when the token expires or a request
 * using it gets a 401. Concurrent requests share one login.
 */
export class AuthSession {
  readonly #apiKey: string | undefined;
  #apiKeyCredential: Credential | undefined;
  #credentials: LoginCredentials | undefined;
  #token: string | undefined;
  #expiresAt: number | undefined;
  /** The login under way, and who it logs in: only a login with the same credentials shares it. */
  #pendingLogin: { credentials: LoginCredentials; promise: Promise<WithResponse<TokenResponse>> } | undefined;
  readonly #login: LoginFunction;

  /** @param options - The client's `apiKey`, `token` or `credentials`. @param login - How to log in. */
  constructor(
    options: { apiKey?: string | undefined; token?: string | undefined; credentials?: LoginCredentials | undefined },
    login: LoginFunction,
  ) {
    this.#apiKey = options.apiKey;
    this.#token = options.token;
    this.#credentials = options.credentials;
    this.#login = login;
  }

  /** The bearer token in use, if any. */
  get token(): string | undefined {
    return this.#token;
  }

  /**
   * The credential for a request that needs one, logging in first when the session has a
   * username and password and no valid token. `undefined` when there is nothing to send. Known
   * at once unless a login is needed: only then is it a promise (a request need not wait a turn).
   */
  credential(override: CredentialOverride | undefined, signal?: AbortSignal): Credential | undefined | Promise<Credential> {
    if (override?.apiKey) return { kind: 'apiKey', value: override.apiKey, renewable: false };
    if (override?.token) return { kind: 'bearer', value: override.token, renewable: false };
    if (this.#apiKey) return (this.#apiKeyCredential ??= { kind: 'apiKey', value: this.#apiKey, renewable: false });
    if (this.#token && !this.#isExpired()) return this.#bearer(this.#token);
    if (this.#credentials) return abortable(this.#sharedLogin(this.#credentials), signal).then(({ data }) => this.#bearer(data.token));
    if (this.#token) return this.#bearer(this.#token);
    return undefined;
  }

  /**
   * After a 401 on a request sent with `staleToken`: gets a new token if the session can, and
   * tells whether the request is worth sending once more. When another request already renewed
   * the token meanwhile, no second login is made.
   */
  async renewAfterRejection(staleToken: string, signal?: AbortSignal): Promise<boolean> {
    if (!this.#credentials) return false;
    if (this.#token !== undefined && this.#token !== staleToken) return true;
    if (this.#token === staleToken) this.#forgetToken();
    await abortable(this.#sharedLogin(this.#credentials), signal);
    return true;
  }

  /**
   * Logs in (with the given credentials, which the session then keeps, or its own) and keeps the
   * token for later requests.
   */
  async login(credentials?: LoginCredentials, options?: RequestOptions): Promise<WithResponse<TokenResponse>> {
    if (credentials) this.#credentials = credentials;
    const use = this.#credentials;
    if (!use) throw new TypeError('login() needs a username and password: pass them, or create the client with `credentials`');
    this.#forgetToken();
    return abortable(this.#sharedLogin(use, options), options?.signal);
  }

  /** Drops the token (after a logout); with credentials, the next request logs in again. */
  clearToken(): void {
    this.#forgetToken();
  }

  /** Picks the header value for one security scheme of an operation, as hey-api asks for it. */
  static tokenFor(scheme: Auth, credential: Credential | undefined): string | undefined {
    if (!credential) return undefined;
    if (scheme.type === 'apiKey') return credential.kind === 'apiKey' ? credential.value : undefined;
    if (scheme.scheme === 'bearer') return credential.kind === 'bearer' ? credential.value : undefined;
    return undefined;
  }

  #bearer(token: string): Credential {
    // Any session token can be replaced when the session can log in, even one given up front.
    return { kind: 'bearer', value: token, renewable: this.#credentials !== undefined };
  }

  #isExpired(): boolean {
    return this.#expiresAt !== undefined && this.#expiresAt - Date.now() < EXPIRY_MARGIN_MS;
  }

  #forgetToken(): void {
    this.#token = undefined;
    this.#expiresAt = undefined;
  }

  #sharedLogin(credentials: LoginCredentials, options?: RequestOptions): Promise<WithResponse<TokenResponse>> {
    // One login for all the requests waiting on it. It runs without any one caller's signal (the
    // others still want it); each caller stops waiting on its own signal instead. A login with
    // other credentials (login() as another user) does not share it: it is a login of its own.
    const pending = this.#pendingLogin;
    if (pending && sameCredentials(pending.credentials, credentials)) return pending.promise;
    const { signal: _ignored, ...shared } = options ?? {};
    const promise: Promise<WithResponse<TokenResponse>> = this.#login(credentials, shared)
      .then((result) => {
        const response = result.data;
        // A login overtaken by one with other credentials (the session switched users while it
        // ran) must not replace the newer user's token.
        if (this.#credentials && sameCredentials(this.#credentials, credentials)) {
          this.#token = response.token;
          const expiresAt = Date.parse(response.expires_at);
          this.#expiresAt = Number.isNaN(expiresAt) ? undefined : expiresAt;
        }
        return result;
      })
      .finally(() => {
        if (this.#pendingLogin?.promise === promise) this.#pendingLogin = undefined;
      });
    this.#pendingLogin = { credentials, promise };
    return promise;
  }
}

function sameCredentials(a: LoginCredentials, b: LoginCredentials): boolean {
  return a.username === b.username && a.password === b.password;
}
