package org.cryoprotect.proxy.pool;

import java.util.Locale;

/**
 * Where a pooled server connection is in its life, in PgBouncer's vocabulary ({@code SHOW SERVERS},
 * {@code SHOW POOLS}). A connection being logged in is not a {@link PooledServer} yet: the pool
 * counts those as {@code sv_login}. Every move goes through {@link PooledServer#moveTo}, which
 * refuses the moves this table does not allow.
 */
public enum ServerState {
  /** Lent to a client session, which runs its units on it. */
  ACTIVE,
  /**
   * Lent, and running the proxy's own query: the check before use, the client's settings, or the
   * reset after a client left (PgBouncer's {@code server_check_query} and {@code server_reset}).
   */
  TESTED,
  /**
   * Given back while a cancel sent for its last client is still on its way: lent to nobody until
   * the server has taken the cancel, or the cancel could stop the next client's query.
   */
  BEING_CANCELED,
  /** In the pool's idle list. Past {@code pool.server_check_delay} it shows as {@code used}. */
  IDLE,
  /** Closed or discarded; counted nowhere. No move leaves it. */
  CLOSED;

  /**
   * The allowed moves. A connection handed straight from a client that gives it back to a waiting
   * one stays {@code ACTIVE}, the only move to itself.
   */
  public boolean canMoveTo(ServerState next) {
    return switch (this) {
      case ACTIVE -> true;
      case TESTED -> next != TESTED;
      case BEING_CANCELED -> next == IDLE || next == ACTIVE || next == CLOSED;
      case IDLE -> next == ACTIVE || next == CLOSED;
      case CLOSED -> false;
    };
  }

  /** The name SHOW SERVERS prints. */
  public String label() {
    return name().toLowerCase(Locale.ROOT);
  }
}
