package org.cryoprotect.proxy.auth;

/**
 * An authentication exchange failed. The message is meant for logs and, when the caller decides so,
 * for the peer: it never contains a password, a hash or a key.
 */
public class AuthException extends Exception {
  private static final long serialVersionUID = 1L;
  private final boolean malformed;

  public AuthException(String reason) {
    super(reason);
    this.malformed = false;
  }

  private AuthException(String reason, boolean malformed) {
    super(reason);
    this.malformed = malformed;
  }

  /** The peer broke the exchange's syntax: a protocol violation, not a wrong password. */
  public static AuthException malformed(String reason) {
    return new AuthException(reason, true);
  }

  public boolean isMalformed() {
    return malformed;
  }

  public AuthException(String reason, Throwable cause) {
    super(reason, cause);
    this.malformed = false;
  }
}
