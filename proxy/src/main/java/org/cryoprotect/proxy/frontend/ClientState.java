package org.cryoprotect.proxy.frontend;

import java.util.Locale;

/**
 * Where a client session is, in PgBouncer's words ({@code SHOW CLIENTS}, {@code cl_*} of {@code
 * SHOW POOLS}). {@link ClientSession#moveTo} is the only way it changes, and it keeps what other
 * threads see ({@link ClientView}) in step.
 */
enum ClientState {
  /** Logged in, holding no server connection: between units in transaction mode. */
  IDLE,
  /** Waiting for a server connection for the unit in its backlog (or for a replica to catch up). */
  WAITING,
  /** Holding a server connection: its unit runs, or the proxy prepares the connection for it. */
  ACTIVE,
  /**
   * The client is gone, or is being sent away: the server connection it held, if any, drains and
   * goes back to the pool, and nothing more is read or acquired for it. No move leaves it.
   */
  CLOSED;

  /** The allowed moves; a session waits again only after it went back to idle. */
  boolean canMoveTo(ClientState next) {
    return switch (this) {
      case IDLE -> next == WAITING || next == CLOSED;
      case WAITING -> next != WAITING;
      case ACTIVE -> next == IDLE || next == CLOSED;
      case CLOSED -> false;
    };
  }

  String label() {
    return name().toLowerCase(Locale.ROOT);
  }
}
