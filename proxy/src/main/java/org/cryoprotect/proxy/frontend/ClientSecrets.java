package org.cryoprotect.proxy.frontend;

import java.io.IOException;
import java.security.GeneralSecurityException;
import java.time.Clock;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executor;
import org.cryoprotect.proxy.auth.AuthQuery;
import org.cryoprotect.proxy.auth.Revocations;
import org.cryoprotect.proxy.auth.Secret;
import org.cryoprotect.proxy.auth.TokenVerifier;
import org.cryoprotect.proxy.auth.UserList;
import org.cryoprotect.proxy.config.ProxyConfig.Auth;
import org.cryoprotect.proxy.config.ProxyConfig.Database;
import org.cryoprotect.proxy.config.ProxyConfig.ServerTls;

/**
 * Finds a user's secret: the users file first (no I/O after load), then {@code auth_query} run on
 * the control plane against the primary of the database the client asked for, PgBouncer style.
 */
public final class ClientSecrets implements AutoCloseable {
  private final Auth auth;
  private final ServerTls serverTls;
  private final UserList users;
  private final Executor controlPlane;
  private final Map<String, AuthQuery> queries = new ConcurrentHashMap<>();
  private final TokenVerifier tokens; // null without auth.jwt

  public ClientSecrets(Auth auth, ServerTls serverTls, Executor controlPlane) throws IOException {
    this(auth, serverTls, controlPlane, Revocations.none());
  }

  public ClientSecrets(
      Auth auth, ServerTls serverTls, Executor controlPlane, Revocations revocations)
      throws IOException {
    this.auth = auth;
    this.serverTls = serverTls;
    this.users = auth.usersFile() == null ? null : UserList.load(auth.usersFile());
    this.controlPlane = controlPlane;
    try {
      this.tokens =
          auth.jwt() == null ? null : new TokenVerifier(auth.jwt(), Clock.systemUTC(), revocations);
    } catch (GeneralSecurityException e) {
      throw new IOException("auth.jwt: " + e.getMessage(), e);
    }
  }

  /** Verifies JWT logins; null when {@code auth.jwt} is not configured. */
  TokenVerifier tokens() {
    return tokens;
  }

  /** Completes on a control-plane thread when auth_query runs: hop back to the event loop. */
  CompletableFuture<Optional<Secret>> lookup(Database database, String user) {
    Optional<Secret> listed = users == null ? Optional.empty() : users.find(user);
    if (listed.isPresent() || auth.authQuery() == null) {
      return CompletableFuture.completedFuture(listed);
    }
    return queries.computeIfAbsent(database.name(), name -> newQuery(database)).lookup(user);
  }

  /** Only the users file: trust mode uses it to find a password for the server login. */
  Optional<Secret> listed(String user) {
    return users == null ? Optional.empty() : users.find(user);
  }

  private AuthQuery newQuery(Database database) {
    String url =
        "jdbc:postgresql://"
            + database.primary().host()
            + ":"
            + database.primary().port()
            + "/"
            + database.dbname()
            + "?ApplicationName=cryoproxy-auth-query"
            + jdbcTls();
    return new AuthQuery(url, auth.authUser(), auth.authPassword(), auth.authQuery(), controlPlane);
  }

  private String jdbcTls() {
    String mode = serverTls.mode().name().toLowerCase(java.util.Locale.ROOT).replace('_', '-');
    String tls = "&sslmode=" + mode;
    return serverTls.caFile() == null ? tls : tls + "&sslrootcert=" + serverTls.caFile();
  }

  @Override
  public void close() {
    queries.values().forEach(AuthQuery::close);
  }
}
