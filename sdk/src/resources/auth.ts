import type { AuthSession } from '../core/auth.js';
import type { LoginCredentials, RequestOptions } from '../core/options.js';
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
  login(credentials?: LoginCredentials, options?: RequestOptions): Promise<TokenResponse> {
    return this.#session.login(credentials, options);
  }

  /**
   * `POST /api/v1/auth/logout`: revokes the client's token, which it then forgets (with
   * `credentials`, the next request logs in again). Does nothing when the client holds no token.
   */
  async logout(options?: RequestOptions): Promise<void> {
    const token = options?.token ?? this.#session.token;
    if (!token) return;
    try {
      // Sent with this exact token, so that a 401 does not log in again just to log out.
      await this.transport.send('logout', (o) => logout(o), { ...options, token });
    } finally {
      if (token === this.#session.token) this.#session.clearToken();
    }
  }

  /** `GET /api/v1/auth/me`: who the client is, how it authenticated and with which permissions. */
  me(options?: RequestOptions): Promise<Principal> {
    return this.transport.send('getCurrentPrincipal', (o) => getCurrentPrincipal(o), options);
  }
}
