import type { AuthSession } from '../core/auth.js';
import type { LoginCredentials, RequestOptions } from '../core/options.js';
import { APIPromise, type CallMode, type WithResponse } from '../core/response.js';
import type { Transport } from '../core/transport.js';
import { getCurrentPrincipal, logout } from '../gen/sdk.gen.js';
import type { Principal, TokenResponse } from '../gen/types.gen.js';
import { Resource } from './resource.js';

/** Login, logout and the current principal (`/api/v1/auth`). API keys are {@link InfernoClient.apiKeys}. */
export class AuthResource extends Resource {
  readonly #session: AuthSession;

  /** @internal */
  constructor(transport: Transport) {
    super(transport);
    this.#session = transport.auth;
  }

  /**
   * `POST /api/v1/auth/login`. The client keeps the token for its later requests (and the
   * credentials, to log in again when the token expires). Without arguments it uses the client's
   * `credentials`. Clients created with `credentials` log in by themselves when first needed;
   * call this to log in earlier, or as another user.
   */
  login(credentials?: LoginCredentials, options?: RequestOptions): APIPromise<TokenResponse> {
    return new APIPromise(this.#session.login(credentials, options), { raw: false });
  }

  /**
   * `POST /api/v1/auth/logout`: revokes the client's token, which it then forgets (with
   * `credentials`, the next request logs in again). Does nothing when the client holds no token.
   */
  logout(options?: RequestOptions): APIPromise<void> {
    const mode: CallMode = { raw: false };
    const token = options?.token ?? this.#session.token;
    if (!token) {
      const none = new Response(null, { status: 204 });
      return new APIPromise(Promise.resolve({ response: none, status: 204, headers: none.headers, requestId: undefined, rateLimit: undefined, data: undefined }), mode);
    }
    // Sent with this exact token, so that a 401 does not log in again just to log out.
    const result = this.transport.request('logout', (o) => logout(o), { ...options, token }, mode).finally(() => {
      if (token === this.#session.token) this.#session.clearToken();
    });
    return new APIPromise(result as Promise<WithResponse<void>>, mode);
  }

  /** `GET /api/v1/auth/me`: who the client is, how it authenticated and with which permissions. */
  me(options?: RequestOptions): APIPromise<Principal> {
    return this.transport.send('getCurrentPrincipal', (o) => getCurrentPrincipal(o), options);
  }
}
