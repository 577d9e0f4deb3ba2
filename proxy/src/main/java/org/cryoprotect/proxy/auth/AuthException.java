package org.cryoprotect.proxy.auth;

/**
 * An authentication exchange failed. The message is meant for logs and, when the caller decides so,
 * for the peer: it never contains a password, a hash or a key.
 */
public class AuthException extends Exception {
  private static final long serialVersionUID = 1L;

  public AuthException(String reason) {
    super(reason);
  }

  public AuthException(String reason, Throwable cause) {
    super(reason, cause);
  }
}
