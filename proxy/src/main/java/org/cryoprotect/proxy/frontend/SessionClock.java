package org.cryoprotect.proxy.frontend;

import io.netty.util.concurrent.EventExecutor;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import org.cryoprotect.proxy.config.ProxyConfig.Limits;
import org.cryoprotect.proxy.protocol.SqlState;

/**
 * PgBouncer's session timeouts with PostgreSQL's SQLSTATEs, on one timer per session (armed only
 * when a limit is set): {@code idle_transaction_timeout} ends a client that holds a server
 * connection in an open transaction and sends nothing (25P03: its transaction rolls back, the
 * connection goes back to the pool); {@code client_idle_timeout} ends any other silent client
 * (57P05); {@code query_timeout} cancels a request the server has not answered (the client hears
 * 57014 and goes on). A statement still running is not idleness. A check that finds nothing due
 * comes back when a limit could next be reached. Confined to the session's event loop.
 */
final class SessionClock {
  /** What the clock needs to know of, and do to, its session. */
  interface Session {
    /** The session is over (or being closed): the clock stops. */
    boolean over();

    /** Something is outstanding: a request, a checkout, a settings apply, queued messages. */
    boolean busy();

    /** It holds a server connection in an open (or failed) transaction. */
    boolean inTransaction();

    /** When the oldest request the server owes an answer was sent; 0 when there is none. */
    long oldestRequestNanos();

    /** Cancels the running request (query_timeout). */
    void cancelRequest();

    /** Ends the session with a FATAL error. */
    void end(SqlState state, String message);
  }

  private final Supplier<Limits> limits;
  private final EventExecutor loop;
  private final Session session;
  private long lastActiveNanos = System.nanoTime(); // the client's last message, or its last answer
  private boolean armed;

  SessionClock(Supplier<Limits> limits, EventExecutor loop, Session session) {
    this.limits = limits;
    this.loop = loop;
    this.session = session;
  }

  /** After login: the first check comes after the shortest limit that is on, if any. */
  void start() {
    arm(shortestLimitNanos());
  }

  /** The client sent something, or was given its last answer: idle from now on. */
  void active() {
    lastActiveNanos = System.nanoTime();
  }

  private long shortestLimitNanos() {
    Limits l = limits.get();
    long shortest = 0;
    for (Duration d :
        List.of(l.clientIdleTimeout(), l.idleTransactionTimeout(), l.queryTimeout())) {
      long n = d.toNanos();
      shortest = n > 0 && (shortest == 0 || n < shortest) ? n : shortest;
    }
    return shortest;
  }

  private void arm(long delayNanos) {
    if (delayNanos <= 0 || armed) {
      return;
    }
    armed = true;
    loop.schedule(this::check, delayNanos, TimeUnit.NANOSECONDS);
  }

  private void check() {
    armed = false;
    if (session.over()) {
      return;
    }
    Limits l = limits.get();
    long now = System.nanoTime();
    long queryLimit = l.queryTimeout().toNanos();
    long oldest = session.oldestRequestNanos();
    if (queryLimit > 0 && oldest != 0 && now - oldest >= queryLimit) {
      session.cancelRequest();
      arm(shortestLimitNanos());
      return;
    }
    boolean inTransaction = session.inTransaction();
    long limit = (inTransaction ? l.idleTransactionTimeout() : l.clientIdleTimeout()).toNanos();
    boolean busy = session.busy();
    long idleFor = now - lastActiveNanos;
    if (!busy && limit > 0 && idleFor >= limit) {
      if (inTransaction) {
        session.end(
            SqlState.IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
            "terminating connection due to idle-in-transaction timeout");
      } else {
        session.end(
            SqlState.IDLE_SESSION_TIMEOUT, "terminating connection due to idle-session timeout");
      }
      return;
    }
    long next = !busy && limit > 0 ? limit - idleFor : shortestLimitNanos();
    if (queryLimit > 0 && oldest != 0) {
      next = Math.min(next, Math.max(1_000_000, oldest + queryLimit - now));
    }
    arm(next);
  }
}
