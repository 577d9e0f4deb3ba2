package org.cryoprotect.proxy.config;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The whole configuration, immutable. Built only by {@link ConfigLoader}, which has validated every
 * value, so the rest of the proxy never re-checks it. Key names are in the example YAML file.
 */
public record ProxyConfig(
    Endpoint listen,
    Endpoint admin,
    Auth auth,
    Pool pool,
    Limits limits,
    ClientTls clientTls,
    ServerTls serverTls,
    Map<String, Database> databases,
    Map<String, User> users,
    Health health,
    Resilience resilience,
    Migrate migrate,
    Audit audit,
    Cache cache,
    List<RefreshView> refreshViews) {

  /** The pool mode for a client of {@code database} logging in as {@code user}. */
  public PoolMode poolMode(Database database, String user) {
    User u = users.get(user);
    if (u != null && u.poolMode() != null) {
      return u.poolMode();
    }
    return database.poolMode() != null ? database.poolMode() : pool.mode();
  }

  /** Server connections per (node, database, role) pool. */
  public int poolSize(Database database) {
    return database.poolSize() > 0 ? database.poolSize() : pool.size();
  }

  public record Endpoint(String host, int port) {
    @Override
    public String toString() {
      return host + ":" + port;
    }
  }

  public enum AuthType {
    TRUST,
    MD5,
    SCRAM_SHA_256
  }

  /**
   * How clients prove who they are. Secrets come from {@code usersFile} first, then {@code
   * authQuery} run as {@code authUser} against the database being connected to.
   */
  public record Auth(
      AuthType type,
      Path usersFile,
      String authQuery,
      String authUser,
      String authPassword,
      List<String> adminUsers,
      List<String> statsUsers,
      Jwt jwt) {
    @Override
    public String toString() {
      // Records print every component; the password must not reach a log line.
      return "Auth[type="
          + type
          + ", usersFile="
          + usersFile
          + ", authQuery="
          + authQuery
          + ", authUser="
          + authUser
          + ", adminUsers="
          + adminUsers
          + ", statsUsers="
          + statsUsers
          + ", jwt="
          + jwt
          + "]";
    }
  }

  /** Token on a connection without TLS: refused, accepted from loopback only, or accepted. */
  public enum PlaintextPolicy {
    NEVER,
    LOOPBACK,
    ALWAYS
  }

  /**
   * JWT logins (DESIGN §6): a client logging in as one of {@code users} presents a token as its
   * password; the proxy verifies it and logs in to the server as the role {@code roles} maps its
   * role claim (and scopes) to. {@code roles}: claim value to the rules tried in order; a rule with
   * a null scope always matches. {@code secret} (HS256) is left out of {@link #toString}.
   */
  public record Jwt(
      List<String> users,
      PlaintextPolicy allowPlaintext,
      Path jwksFile,
      String secret,
      List<String> algorithms,
      String issuer,
      String audience,
      Duration clockSkew,
      int maxTokenBytes,
      String roleClaim,
      String scopeClaim,
      Map<String, List<RoleRule>> roles,
      Path claimsKeyFile,
      Duration revocationPoll,
      List<String> oauthbearerUsers) {
    @Override
    public String toString() {
      return "Jwt[users="
          + users
          + ", allowPlaintext="
          + allowPlaintext
          + ", jwksFile="
          + jwksFile
          + ", algorithms="
          + algorithms
          + ", issuer="
          + issuer
          + ", audience="
          + audience
          + ", roles="
          + roles
          + "]";
    }

    /** Whether {@code user} logs in with a token. */
    public boolean takes(String user) {
      return users.contains(user) || users.contains("*") || oauthbearer(user);
    }

    /** Whether {@code user} presents its token by SASL OAUTHBEARER instead of as a password. */
    public boolean oauthbearer(String user) {
      return oauthbearerUsers.contains(user);
    }
  }

  /** One role mapping rule: with {@code scope} (null: any token) the login role is {@code role}. */
  public record RoleRule(String scope, String role) {}

  public enum PoolMode {
    SESSION,
    TRANSACTION
  }

  /**
   * Pool limits, PgBouncer's meanings. {@code reserveSize} extra connections are opened for a
   * client that waited {@code reserveTimeout}; {@code maxDbConnections} caps all pools of one
   * database (0 = no cap); {@code waitTimeout} ends a wait with 53300; connections older than
   * {@code serverLifetime} or idle longer than {@code serverIdleTimeout} are closed when idle; one
   * idle longer than {@code serverCheckDelay} is checked before use. {@code preparedPerServer}
   * bounds each server connection's prepared statements (LRU, Close on eviction).
   */
  public record Pool(
      PoolMode mode,
      int size,
      int minIdle,
      int reserveSize,
      Duration reserveTimeout,
      int maxDbConnections,
      Duration waitTimeout,
      Duration serverLifetime,
      Duration serverIdleTimeout,
      Duration serverCheckDelay,
      int preparedPerServer) {}

  /** Per-user overrides; {@code poolMode} null = the database's mode. */
  public record User(String name, PoolMode poolMode) {}

  public record Limits(
      int maxClientConnections,
      int maxMessageSize,
      Duration clientLoginTimeout,
      Duration serverConnectTimeout,
      Duration shutdownTimeout,
      Duration clientIdleTimeout,
      Duration idleTransactionTimeout,
      Duration queryTimeout,
      int maxClientPreparedStatements) {}

  public enum ClientTlsMode {
    DISABLE,
    ALLOW,
    REQUIRE
  }

  public record ClientTls(ClientTlsMode mode, Path certFile, Path keyFile) {}

  public enum ServerTlsMode {
    DISABLE,
    PREFER,
    REQUIRE,
    VERIFY_CA,
    VERIFY_FULL;

    /** The libpq (and pgJDBC) {@code sslmode} value, e.g. {@code verify-full}. */
    public String sslmode() {
      return name().toLowerCase(Locale.ROOT).replace('_', '-');
    }
  }

  public record ServerTls(ServerTlsMode mode, Path caFile) {}

  /**
   * Control-plane health probes of every node. {@code user} and {@code password} null: the
   * database's own server login, else {@code auth.auth_user}, else {@code postgres}.
   */
  /**
   * The owner login {@code cryoproxy migrate} applies {@code sql/} with, on every database's
   * primary: not a login clients are ever mapped to.
   */
  /** What to do with an audit record the journal has no room for. */
  public enum OnFull {
    /** Refuse audited work (53400) until the writer has made room: fail closed. */
    BLOCK,
    /** Run the statement unaudited and count the record as dropped. */
    DROP
  }

  /**
   * The audit trail (DESIGN §6): every statement of a session whose login role is in {@code roles}
   * becomes a record, journaled in {@code journalDir} (fsync'd before the client hears the
   * statement completed) and copied by a writer into {@code table} of the statement's database,
   * logging in as {@code user} (null: the health probes' login). {@code maxJournalBytes} bounds
   * what may wait in the journal. Null in {@link ProxyConfig} when not configured.
   */
  public record Audit(
      List<String> roles,
      String table,
      Path journalDir,
      OnFull onFull,
      long maxJournalBytes,
      boolean parameters,
      String user,
      String password) {
    @Override
    public String toString() {
      // Records print every component; the password must not reach a log line.
      return "Audit[roles="
          + roles
          + ", table="
          + table
          + ", journalDir="
          + journalDir
          + ", onFull="
          + onFull
          + ", maxJournalBytes="
          + maxJournalBytes
          + ", parameters="
          + parameters
          + ", user="
          + user
          + "]";
    }
  }

  public record Migrate(String user, String password) {
    @Override
    public String toString() {
      return "Migrate[user=" + user + "]";
    }
  }

  public record Health(Duration interval, Duration timeout, String user, String password) {
    @Override
    public String toString() {
      // Records print every component; the password must not reach a log line.
      return "Health[interval=" + interval + ", timeout=" + timeout + ", user=" + user + "]";
    }
  }

  /** A database clients connect to by {@code name}; {@code dbname} is its name on the server. */
  public record Database(
      String name,
      String dbname,
      Endpoint primary,
      List<Endpoint> replicas,
      String user,
      String password,
      PoolMode poolMode,
      int poolSize,
      Routing routing) {
    @Override
    public String toString() {
      // Records print every component; the password must not reach a log line.
      return "Database[name="
          + name
          + ", dbname="
          + dbname
          + ", primary="
          + primary
          + ", replicas="
          + replicas
          + ", user="
          + user
          + ", poolMode="
          + poolMode
          + ", poolSize="
          + poolSize
          + ", routing="
          + routing
          + "]";
    }
  }

  public enum ReadYourWrites {
    OFF,
    SESSION
  }

  /**
   * Read routing of one database (DESIGN §5). {@code enabled} sends work the proxy can prove
   * read-only to replicas; replicas behind {@code maxLag} or {@code maxLagBytes} are skipped;
   * {@code readYourWrites} SESSION keeps a client's reads off replicas that have not replayed its
   * last commit.
   */
  public record Routing(
      boolean enabled, Duration maxLag, long maxLagBytes, ReadYourWrites readYourWrites) {
    public static final Routing DEFAULT =
        new Routing(true, Duration.ofSeconds(10), 16L << 20, ReadYourWrites.SESSION);
  }

  /**
   * Circuit breakers (one per node) and connect retries (DESIGN §4). A breaker opens when, among
   * the last {@code window} connection attempts (at least {@code minimumCalls}), {@code
   * failureRate} percent failed or took longer than {@code slowCall}; or when two health probes in
   * a row find the node down. A server connection lost in use is not counted: it triggers a probe.
   * It stays open {@code openFor}, then lets {@code halfOpenCalls} attempts test the node. For the
   * first {@code grace} of a primary's outage (since its breaker left closed) work is not failed
   * fast: a client's connect waits for the next probe to find the node back, so a restart that is
   * over in seconds costs only the transactions it interrupted; a longer outage fails fast.
   * Connecting is retried up to {@code retryAttempts} times, with exponential backoff from {@code
   * retryBackoff} up to {@code retryMaxBackoff} and full jitter, never beyond the client's {@code
   * pool.wait_timeout}.
   */
  public record Resilience(
      int failureRate,
      Duration slowCall,
      int minimumCalls,
      int window,
      Duration openFor,
      int halfOpenCalls,
      Duration grace,
      int retryAttempts,
      Duration retryBackoff,
      Duration retryMaxBackoff) {}

  /**
   * The result cache (DESIGN §7). Only reads whose relations are all named by a rule (or that carry
   * a {@code cryoproxy:cache} hint) are cached, each for its rule's {@code ttl}; {@code maxSize}
   * bounds the bytes of all entries, {@code maxEntrySize} one reply. Writes from elsewhere arrive
   * as NOTIFY on {@code invalidationChannel}. {@link #OFF} when not configured.
   */
  public record Cache(
      boolean enabled,
      long maxSize,
      long maxEntrySize,
      List<CacheRule> rules,
      String invalidationChannel) {
    public static final Cache OFF = new Cache(false, 0, 0, List.of(), "cryoproxy_invalidate");
  }

  /** Tables as {@code schema.name}, lower case unless they were quoted in the file. */
  public record CacheRule(List<String> tables, Duration ttl) {}

  /**
   * A materialized view the control plane refreshes CONCURRENTLY every {@code every} (through
   * {@code cryoproxy.refresh_view}, sql/ V6), on the primary of proxy database {@code database}.
   */
  public record RefreshView(String database, String view, Duration every) {}
}
