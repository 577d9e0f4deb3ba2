package org.cryoprotect.proxy.auth;

import com.zaxxer.hikari.HikariConfig;
import com.zaxxer.hikari.HikariDataSource;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.Executor;
import java.util.concurrent.RejectedExecutionException;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * PgBouncer's auth_query: fetch a user's secret from the database itself, over the control plane
 * (HikariCP + pgJDBC), never on an event loop. The query takes the user name as its only parameter
 * and returns (user name, secret); a NULL secret means the user cannot log in with a password,
 * which is reported as an unknown user.
 *
 * <p>Thread-safe. The pool is created on first use so that a proxy whose users all come from the
 * users file never opens a control-plane connection for auth_query.
 */
public final class AuthQuery implements SecretSource, AutoCloseable {
  public static final String DEFAULT_QUERY =
      "SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = $1";
  static final String POOL_NAME = "cryoproxy-auth-query";
  private static final int MAX_CONNECTIONS = 2;
  private static final long CONNECTION_TIMEOUT_MS = 5_000;
  // A stuck query must not hold a control-plane thread, and a login, forever.
  private static final int QUERY_TIMEOUT_SECONDS = 5;
  private static final Pattern PARAMETER = Pattern.compile("\\$(\\d+)");

  /**
   * Look-ups queued or running at once. The control plane's queue is otherwise unbounded, and a
   * flood of logins for users only auth_query knows would grow it without end; past the bound a
   * login is refused at once (53300) instead of waiting behind thousands of others.
   */
  static final int MAX_PENDING = 256;

  private final java.util.concurrent.atomic.AtomicInteger pending =
      new java.util.concurrent.atomic.AtomicInteger();

  private final String jdbcUrl;
  private final String user;
  private final String password;
  private final String sql;
  private final Executor executor;
  private HikariDataSource pool; // guarded by this
  private boolean closed; // guarded by this

  /** {@code query} null means {@link #DEFAULT_QUERY}; {@code password} may be null (trust). */
  public AuthQuery(String jdbcUrl, String user, String password, String query, Executor executor) {
    this.jdbcUrl = Objects.requireNonNull(jdbcUrl, "jdbcUrl");
    this.user = Objects.requireNonNull(user, "user");
    this.password = password;
    this.sql = toJdbc(query == null ? DEFAULT_QUERY : query);
    this.executor = Objects.requireNonNull(executor, "executor");
  }

  /**
   * PostgreSQL's $1 becomes JDBC's ?. Only $1 is allowed: the query has exactly one input. The
   * rewrite does not parse SQL, so a literal "$1" inside a string constant would be replaced too;
   * auth queries have no reason to contain one.
   */
  static String toJdbc(String query) {
    Matcher m = PARAMETER.matcher(query);
    StringBuilder out = new StringBuilder();
    int found = 0;
    while (m.find()) {
      if (!m.group(1).equals("1")) {
        throw new IllegalArgumentException(
            "auth_query may use only $1 (the user name), found $" + m.group(1));
      }
      found++;
      m.appendReplacement(out, "?");
    }
    m.appendTail(out);
    if (found != 1) {
      throw new IllegalArgumentException(
          "auth_query must use $1 (the user name) exactly once, found " + found);
    }
    return out.toString();
  }

  /** Runs on the executor; completes exceptionally with the SQLException when the query fails. */
  @Override
  public CompletableFuture<Optional<Secret>> lookup(String username) {
    Objects.requireNonNull(username, "username");
    if (pending.incrementAndGet() > MAX_PENDING) {
      pending.decrementAndGet();
      return CompletableFuture.failedFuture(new Busy());
    }
    try {
      return CompletableFuture.supplyAsync(() -> query(username), executor)
          .whenComplete((found, error) -> pending.decrementAndGet());
    } catch (RejectedExecutionException e) {
      pending.decrementAndGet();
      return CompletableFuture.failedFuture(e);
    }
  }

  /** {@link #MAX_PENDING} look-ups are already waiting. */
  public static final class Busy extends RuntimeException {
    Busy() {
      super(MAX_PENDING + " auth_query look-ups already waiting", null, false, false);
    }
  }

  private Optional<Secret> query(String username) {
    try (Connection connection = pool().getConnection();
        PreparedStatement statement = connection.prepareStatement(sql)) {
      statement.setQueryTimeout(QUERY_TIMEOUT_SECONDS);
      statement.setString(1, username);
      try (ResultSet rows = statement.executeQuery()) {
        if (!rows.next()) {
          return Optional.empty();
        }
        String secret = rows.getString(2);
        return secret == null ? Optional.empty() : Optional.of(Secret.parse(secret));
      }
    } catch (SQLException e) {
      throw new CompletionException(e);
    }
  }

  private synchronized HikariDataSource pool() {
    if (closed) {
      throw new IllegalStateException("auth_query is closed");
    }
    if (pool == null) {
      HikariConfig config = new HikariConfig();
      config.setPoolName(POOL_NAME);
      config.setJdbcUrl(jdbcUrl);
      config.setUsername(user);
      config.setPassword(password);
      config.setMaximumPoolSize(MAX_CONNECTIONS);
      config.setMinimumIdle(0);
      config.setConnectionTimeout(CONNECTION_TIMEOUT_MS);
      // Do not connect while building the pool: a database that is down now must not make the
      // pool unusable later; each lookup then fails (or succeeds) on its own.
      config.setInitializationFailTimeout(-1);
      config.setReadOnly(true);
      pool = new HikariDataSource(config);
    }
    return pool;
  }

  @Override
  public synchronized void close() {
    closed = true;
    if (pool != null) {
      pool.close();
      pool = null;
    }
  }

  @Override
  public String toString() {
    // The JDBC URL may carry a password parameter; the user name is enough to identify us.
    return "AuthQuery[user=" + user + "]";
  }
}
