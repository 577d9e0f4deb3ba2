package org.cryoprotect.proxy.backend;

import org.cryoprotect.proxy.protocol.SqlState;
import org.cryoprotect.proxy.protocol.backend.ErrorResponse;

/**
 * Reaching or logging in to a server failed. Either the server said why ({@link #serverError},
 * forwarded to the client as is) or the proxy did ({@link #state} and the message).
 */
public final class ServerException extends Exception {
  private final SqlState state;
  private final ErrorResponse serverError;

  public ServerException(SqlState state, String message) {
    super(message, null, false, false);
    this.state = state;
    this.serverError = null;
  }

  public ServerException(ErrorResponse serverError) {
    super(serverError.toString(), null, false, false);
    this.state = null;
    this.serverError = serverError;
  }

  public SqlState state() {
    return state;
  }

  /** The server's own error, or null when the proxy raised this. */
  public ErrorResponse serverError() {
    return serverError;
  }
}
