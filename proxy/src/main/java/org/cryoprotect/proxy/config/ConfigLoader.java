package org.cryoprotect.proxy.config;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import org.cryoprotect.proxy.config.ProxyConfig.Audit;
import org.cryoprotect.proxy.config.ProxyConfig.Auth;
import org.cryoprotect.proxy.config.ProxyConfig.AuthType;
import org.cryoprotect.proxy.config.ProxyConfig.Cache;
import org.cryoprotect.proxy.config.ProxyConfig.CacheRule;
import org.cryoprotect.proxy.config.ProxyConfig.ClientTls;
import org.cryoprotect.proxy.config.ProxyConfig.ClientTlsMode;
import org.cryoprotect.proxy.config.ProxyConfig.Database;
import org.cryoprotect.proxy.config.ProxyConfig.Endpoint;
import org.cryoprotect.proxy.config.ProxyConfig.Health;
import org.cryoprotect.proxy.config.ProxyConfig.Jwt;
import org.cryoprotect.proxy.config.ProxyConfig.Limits;
import org.cryoprotect.proxy.config.ProxyConfig.Migrate;
import org.cryoprotect.proxy.config.ProxyConfig.OnFull;
import org.cryoprotect.proxy.config.ProxyConfig.PlaintextPolicy;
import org.cryoprotect.proxy.config.ProxyConfig.Pool;
import org.cryoprotect.proxy.config.ProxyConfig.PoolMode;
import org.cryoprotect.proxy.config.ProxyConfig.ReadYourWrites;
import org.cryoprotect.proxy.config.ProxyConfig.RefreshView;
import org.cryoprotect.proxy.config.ProxyConfig.Resilience;
import org.cryoprotect.proxy.config.ProxyConfig.RoleRule;
import org.cryoprotect.proxy.config.ProxyConfig.Routing;
import org.cryoprotect.proxy.config.ProxyConfig.ServerTls;
import org.cryoprotect.proxy.config.ProxyConfig.ServerTlsMode;
import org.cryoprotect.proxy.config.ProxyConfig.User;

/**
 * Reads the YAML file, applies {@code CRYOPROXY_*} environment overrides, validates everything and
 * returns an immutable {@link ProxyConfig}. Every failure is a {@link ConfigException} naming the
 * key.
 *
 * <p>Overrides: {@code CRYOPROXY_} followed by the key path with {@code __} between levels, e.g.
 * {@code CRYOPROXY_LISTEN__PORT=7432} or {@code CRYOPROXY_DATABASES__APP__PRIMARY__HOST=db}. A
 * double underscore is needed because key names themselves contain single underscores.
 */
public final class ConfigLoader {
  static final String ENV_PREFIX = "CRYOPROXY_";
  private static final Set<String> TOP_LEVEL =
      Set.of(
          "listen",
          "admin",
          "auth",
          "pool",
          "limits",
          "tls",
          "databases",
          "users",
          "health",
          "resilience",
          "migrate",
          "audit",
          "cache",
          "refresh_views");
  private static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());

  private ConfigLoader() {}

  public static ProxyConfig load(Path file) throws ConfigException {
    return load(file, System.getenv());
  }

  public static ProxyConfig load(Path file, Map<String, String> env) throws ConfigException {
    JsonNode root;
    try {
      root = YAML.readTree(Files.readString(file));
    } catch (JsonProcessingException e) {
      throw new ConfigException("", "invalid YAML in " + file + ": " + e.getOriginalMessage());
    } catch (IOException e) {
      throw new ConfigException("", "cannot read " + file + ": " + e.getMessage());
    }
    if (root == null || root.isMissingNode() || root.isNull()) {
      root = YAML.createObjectNode();
    }
    if (!root.isObject()) {
      throw new ConfigException("", file + " must contain a YAML mapping");
    }
    applyEnvironment((ObjectNode) root, env);
    Path baseDir = file.toAbsolutePath().getParent();
    return build(new ConfigNode("", root, baseDir));
  }

  static void applyEnvironment(ObjectNode root, Map<String, String> env) throws ConfigException {
    // Sorted so that overrides apply in a stable order whatever the map's iteration order.
    for (Map.Entry<String, String> e : new TreeMap<>(env).entrySet()) {
      if (!e.getKey().startsWith(ENV_PREFIX)) {
        continue;
      }
      String[] path =
          e.getKey().substring(ENV_PREFIX.length()).toLowerCase(Locale.ROOT).split("__");
      if (!TOP_LEVEL.contains(path[0])) {
        continue; // CRYOPROXY_OPTS and friends belong to the launch script, not to the config
      }
      JsonNode at = root;
      for (int i = 0; i < path.length - 1; i++) {
        at = descend(at, path[i], path[i + 1], e.getKey());
      }
      String leaf = path[path.length - 1];
      if (at instanceof ObjectNode object) {
        object.put(leaf, e.getValue());
      } else if (at instanceof ArrayNode array && leaf.matches("\\d+")) {
        setIndex(array, Integer.parseInt(leaf), YAML.getNodeFactory().textNode(e.getValue()));
      } else {
        throw new ConfigException(e.getKey(), "does not name a configuration key");
      }
    }
  }

  private static JsonNode descend(JsonNode at, String segment, String next, String variable)
      throws ConfigException {
    boolean nextIsIndex = next.matches("\\d+");
    if (at instanceof ObjectNode object) {
      JsonNode child = object.get(segment);
      if (child == null || child.isNull() || child.isValueNode()) {
        child = nextIsIndex ? object.putArray(segment) : object.putObject(segment);
      }
      return child;
    }
    if (at instanceof ArrayNode array && segment.matches("\\d+")) {
      int index = Integer.parseInt(segment);
      JsonNode child = index < array.size() ? array.get(index) : null;
      if (child == null || !child.isContainerNode()) {
        child = nextIsIndex ? YAML.createArrayNode() : YAML.createObjectNode();
        setIndex(array, index, child);
      }
      return child;
    }
    throw new ConfigException(variable, "does not name a configuration key");
  }

  private static void setIndex(ArrayNode array, int index, JsonNode value) {
    while (array.size() <= index) {
      array.addNull();
    }
    array.set(index, value);
  }

  private static ProxyConfig build(ConfigNode root) throws ConfigException {
    Endpoint listen = endpoint(root.child("listen"), "127.0.0.1", 6432);
    Endpoint admin = endpoint(root.child("admin"), "127.0.0.1", 9187);
    Auth auth = auth(root.child("auth"));
    Pool pool = pool(root.child("pool"));
    Limits limits = limits(root.child("limits"));
    ConfigNode tls = root.child("tls");
    ClientTls clientTls = clientTls(tls.child("client"));
    ServerTls serverTls = serverTls(tls.child("server"));
    tls.rejectUnknownKeys();
    Map<String, Database> databases = databases(root.child("databases"));
    Map<String, User> users = users(root.child("users"));
    Health health = health(root.child("health"));
    Resilience resilience = resilience(root.child("resilience"));
    ConfigNode migrateNode = root.child("migrate");
    Migrate migrate =
        new Migrate(migrateNode.string("user", "postgres"), migrateNode.string("password", null));
    migrateNode.rejectUnknownKeys();
    Audit audit = audit(root.child("audit"));
    Cache cache = cache(root.child("cache"));
    List<RefreshView> refreshViews = refreshViews(root, databases);
    root.rejectUnknownKeys();
    return new ProxyConfig(
        listen,
        admin,
        auth,
        pool,
        limits,
        clientTls,
        serverTls,
        databases,
        users,
        health,
        resilience,
        migrate,
        audit,
        cache,
        refreshViews);
  }

  private static List<RefreshView> refreshViews(ConfigNode root, Map<String, Database> databases)
      throws ConfigException {
    List<RefreshView> views = new java.util.ArrayList<>();
    for (ConfigNode v : root.list("refresh_views")) {
      String database = v.requiredString("database");
      if (!databases.containsKey(database)) {
        throw new ConfigException(v.key("database"), "names no configured database: " + database);
      }
      String view = v.requiredString("view");
      if (!QUALIFIED.matcher(view).matches()) {
        throw new ConfigException(v.key("view"), "expected schema.view, not " + view);
      }
      Duration every = v.duration("every", Duration.ofMinutes(5));
      if (every.compareTo(Duration.ofSeconds(1)) < 0) {
        throw new ConfigException(v.key("every"), "must be at least 1s");
      }
      v.rejectUnknownKeys();
      views.add(new RefreshView(database, view, every));
    }
    return List.copyOf(views);
  }

  private static final java.util.regex.Pattern QUALIFIED =
      java.util.regex.Pattern.compile("[^.\\s]+\\.[^.\\s]+");

  private static Cache cache(ConfigNode node) throws ConfigException {
    if (!node.present()) {
      return Cache.OFF;
    }
    boolean enabled = node.bool("enabled", false);
    long maxSize = node.bytes("max_size", 256L << 20);
    long maxEntry = node.bytes("max_entry_size", 1L << 20);
    if (maxSize < (1L << 20)) {
      throw new ConfigException(node.key("max_size"), "must be at least 1mb");
    }
    if (maxEntry < 1024 || maxEntry > maxSize) {
      throw new ConfigException(node.key("max_entry_size"), "must be between 1kb and max_size");
    }
    List<CacheRule> rules = new java.util.ArrayList<>();
    for (ConfigNode rule : node.list("rules")) {
      List<String> tables = new java.util.ArrayList<>();
      for (String t : rule.strings("tables")) {
        if (!QUALIFIED.matcher(t).matches()) {
          throw new ConfigException(rule.key("tables"), "expected schema.table, not " + t);
        }
        tables.add(t.contains("\"") ? t.replace("\"", "") : t.toLowerCase(Locale.ROOT));
      }
      if (tables.isEmpty()) {
        throw new ConfigException(rule.key("tables"), "is required: the tables this rule caches");
      }
      Duration ttl = rule.duration("ttl", Duration.ofSeconds(60));
      if (ttl.isZero() || ttl.isNegative()) {
        throw new ConfigException(rule.key("ttl"), "must be positive");
      }
      rule.rejectUnknownKeys();
      rules.add(new CacheRule(List.copyOf(tables), ttl));
    }
    String channel = node.string("invalidation_channel", "cryoproxy_invalidate");
    if (!channel.matches("[a-z_][a-z0-9_]*")) {
      throw new ConfigException(node.key("invalidation_channel"), "expected a plain identifier");
    }
    node.rejectUnknownKeys();
    return new Cache(enabled, maxSize, maxEntry, List.copyOf(rules), channel);
  }

  private static final java.util.regex.Pattern TABLE =
      java.util.regex.Pattern.compile("[a-z_][a-z0-9_]*\\.[a-z_][a-z0-9_]*");

  private static Audit audit(ConfigNode node) throws ConfigException {
    if (!node.present()) {
      return null;
    }
    List<String> roles = node.strings("roles");
    if (roles.isEmpty()) {
      throw new ConfigException(node.key("roles"), "is required: the login roles to audit");
    }
    String table = node.string("table", "audit.service_role_log");
    if (!TABLE.matcher(table).matches()) {
      throw new ConfigException(node.key("table"), "expected schema.table, not " + table);
    }
    Audit audit =
        new Audit(
            List.copyOf(roles),
            table,
            node.directory("journal_dir", "audit-journal"),
            node.choice("on_full", OnFull.class, OnFull.BLOCK),
            node.bytes("max_journal_bytes", 1L << 30),
            node.bool("parameters", false),
            node.string("user", null),
            node.string("password", null));
    if (audit.maxJournalBytes() < (1L << 20)) {
      throw new ConfigException(node.key("max_journal_bytes"), "must be at least 1mb");
    }
    node.rejectUnknownKeys();
    return audit;
  }

  private static Resilience resilience(ConfigNode node) throws ConfigException {
    ConfigNode breaker = node.child("breaker");
    ConfigNode retry = node.child("retry");
    Resilience r =
        new Resilience(
            breaker.integer("failure_rate", 50, 1, 100),
            breaker.duration("slow_call", Duration.ofSeconds(5)),
            breaker.integer("minimum_calls", 5, 1, 10_000),
            breaker.integer("window", 20, 1, 10_000),
            breaker.duration("open_for", Duration.ofSeconds(5)),
            breaker.integer("half_open_calls", 2, 1, 1_000),
            breaker.duration("grace", Duration.ofSeconds(3)),
            retry.integer("attempts", 4, 1, 100),
            retry.duration("backoff", Duration.ofMillis(50)),
            retry.duration("max_backoff", Duration.ofSeconds(1)));
    if (r.openFor().isZero()) {
      throw new ConfigException(breaker.key("open_for"), "must be positive");
    }
    if (r.retryBackoff().isZero() || r.retryMaxBackoff().compareTo(r.retryBackoff()) < 0) {
      throw new ConfigException(retry.key("max_backoff"), "must be at least retry.backoff (> 0)");
    }
    breaker.rejectUnknownKeys();
    retry.rejectUnknownKeys();
    node.rejectUnknownKeys();
    return r;
  }

  /** {@code off | session}; YAML reads a bare {@code off} as false, which means the same. */
  private static ReadYourWrites readYourWrites(ConfigNode node, ReadYourWrites fallback)
      throws ConfigException {
    String value = node.string("read_your_writes", null);
    if (value == null) {
      return fallback;
    }
    return switch (value.trim().toLowerCase(Locale.ROOT)) {
      case "off", "false" -> ReadYourWrites.OFF;
      case "session" -> ReadYourWrites.SESSION;
      default ->
          throw new ConfigException(
              node.key("read_your_writes"), "'" + value + "' is not one of off, session");
    };
  }

  private static Routing routing(ConfigNode node, boolean hasReplicas) throws ConfigException {
    Routing d = Routing.DEFAULT;
    Routing routing =
        new Routing(
            node.bool("enabled", hasReplicas),
            node.duration("max_lag", d.maxLag()),
            node.bytes("max_lag_bytes", d.maxLagBytes()),
            readYourWrites(node, d.readYourWrites()));
    node.rejectUnknownKeys();
    return routing;
  }

  private static Endpoint endpoint(ConfigNode node, String host, int port) throws ConfigException {
    Endpoint endpoint =
        new Endpoint(node.string("host", host), node.integer("port", port, 0, 65535));
    node.rejectUnknownKeys();
    return endpoint;
  }

  /** A comma-separated list of names, e.g. {@code auth.admin_users}. */
  private static List<String> names(ConfigNode node, String key) throws ConfigException {
    List<String> names = new ArrayList<>();
    for (String name : node.string(key, "").split(",")) {
      if (!name.isBlank()) {
        names.add(name.trim());
      }
    }
    return List.copyOf(names);
  }

  private static Auth auth(ConfigNode node) throws ConfigException {
    AuthType type = node.choice("type", AuthType.class, AuthType.TRUST);
    Auth auth =
        new Auth(
            type,
            node.file("users_file"),
            node.string("auth_query", null),
            node.string("auth_user", null),
            node.string("auth_password", null),
            names(node, "admin_users"),
            names(node, "stats_users"),
            jwt(node.child("jwt")));
    if (type != AuthType.TRUST && auth.usersFile() == null && auth.authQuery() == null) {
      throw new ConfigException(
          node.key("type"), type + " needs auth.users_file or auth.auth_query to find secrets");
    }
    if (auth.authQuery() != null && auth.authUser() == null) {
      throw new ConfigException(node.key("auth_user"), "is required with auth.auth_query");
    }
    node.rejectUnknownKeys();
    return auth;
  }

  private static Jwt jwt(ConfigNode node) throws ConfigException {
    if (!node.present()) {
      return null;
    }
    List<String> users = new ArrayList<>();
    for (String user : node.string("users", "").split(",")) {
      if (!user.isBlank()) {
        users.add(user.trim());
      }
    }
    if (users.isEmpty() && !node.has("oauthbearer_users")) {
      throw new ConfigException(node.key("users"), "is required: the logins that present a token");
    }
    List<String> algorithms = new ArrayList<>();
    for (String alg : node.string("algorithms", "ES256,RS256").split(",")) {
      String a = alg.trim().toUpperCase(Locale.ROOT);
      if (!List.of("ES256", "RS256", "HS256").contains(a)) {
        throw new ConfigException(node.key("algorithms"), "ES256, RS256 or HS256, not " + alg);
      }
      algorithms.add(a);
    }
    Map<String, List<RoleRule>> roles = new LinkedHashMap<>();
    ConfigNode rolesNode = node.child("roles");
    for (String claim : rolesNode.fieldNames()) {
      List<RoleRule> rules = new ArrayList<>();
      if (rolesNode.isList(claim)) {
        for (ConfigNode rule : rolesNode.list(claim)) {
          rules.add(new RoleRule(rule.string("scope", null), rule.requiredString("role")));
          rule.rejectUnknownKeys();
        }
      } else {
        rules.add(new RoleRule(null, rolesNode.requiredString(claim)));
      }
      roles.put(claim, List.copyOf(rules));
    }
    if (roles.isEmpty()) {
      throw new ConfigException(
          node.key("roles"), "is required: which role claims map to which roles");
    }
    Jwt jwt =
        new Jwt(
            List.copyOf(users),
            node.choice("allow_plaintext", PlaintextPolicy.class, PlaintextPolicy.LOOPBACK),
            node.file("jwks_file"),
            node.string("secret", null),
            List.copyOf(algorithms),
            node.string("issuer", null),
            node.string("audience", null),
            node.duration("clock_skew", Duration.ofSeconds(30)),
            node.integer("max_token_bytes", 8192, 256, 1 << 20),
            node.string("role_claim", "role"),
            node.string("scope_claim", "scope"),
            roles,
            node.file("claims_key_file"),
            node.duration("revocation_poll", Duration.ofSeconds(10)),
            List.copyOf(node.strings("oauthbearer_users")));
    if (jwt.revocationPoll().compareTo(Duration.ofMillis(100)) < 0) {
      throw new ConfigException(node.key("revocation_poll"), "must be at least 100ms");
    }
    if (jwt.jwksFile() == null && jwt.secret() == null) {
      throw new ConfigException(node.key("jwks_file"), "or auth.jwt.secret is required");
    }
    if (jwt.secret() != null && jwt.secret().getBytes(StandardCharsets.UTF_8).length < 32) {
      throw new ConfigException(node.key("secret"), "must be at least 32 bytes");
    }
    if (jwt.claimsKeyFile() == null) {
      throw new ConfigException(
          node.key("claims_key_file"), "is required: the key that signs claims for the database");
    }
    node.rejectUnknownKeys();
    return jwt;
  }

  private static Pool pool(ConfigNode node) throws ConfigException {
    Pool pool =
        new Pool(
            node.choice("mode", PoolMode.class, PoolMode.SESSION),
            node.integer("size", 20, 1, 10_000),
            node.integer("min_idle", 0, 0, 10_000),
            node.integer("reserve_size", 0, 0, 10_000),
            node.duration("reserve_timeout", Duration.ofSeconds(5)),
            node.integer("max_db_connections", 0, 0, 100_000),
            node.duration("wait_timeout", Duration.ofSeconds(30)),
            node.duration("server_lifetime", Duration.ofHours(1)),
            node.duration("server_idle_timeout", Duration.ofMinutes(10)),
            node.duration("server_check_delay", Duration.ofSeconds(30)),
            node.integer("prepared_statements_per_server", 1000, 1, 1_000_000));
    if (pool.minIdle() > pool.size()) {
      throw new ConfigException(node.key("min_idle"), "must not exceed pool.size");
    }
    node.rejectUnknownKeys();
    return pool;
  }

  private static Health health(ConfigNode node) throws ConfigException {
    Health health =
        new Health(
            node.duration("interval", Duration.ofSeconds(2)),
            node.duration("timeout", Duration.ofSeconds(3)),
            node.string("user", null),
            node.string("password", null));
    if (health.interval().compareTo(Duration.ofMillis(100)) < 0
        || health.interval().compareTo(Duration.ofHours(1)) > 0) {
      throw new ConfigException(node.key("interval"), "must be between 100ms and 1h");
    }
    // 250 ms is HikariCP's floor for connectionTimeout and validationTimeout: it rejects less.
    if (health.timeout().compareTo(Duration.ofMillis(250)) < 0
        || health.timeout().compareTo(Duration.ofMinutes(1)) > 0) {
      throw new ConfigException(node.key("timeout"), "must be between 250ms and 1m");
    }
    if (health.user() != null && health.user().isBlank()) {
      throw new ConfigException(node.key("user"), "must not be empty");
    }
    node.rejectUnknownKeys();
    return health;
  }

  private static Limits limits(ConfigNode node) throws ConfigException {
    Limits limits =
        new Limits(
            node.integer("max_client_connections", 10_000, 1, 1_000_000),
            node.integer("max_message_size", 64 << 20, 1024, Integer.MAX_VALUE - 8),
            node.duration("client_login_timeout", Duration.ofSeconds(15)),
            node.duration("server_connect_timeout", Duration.ofSeconds(5)),
            node.duration("shutdown_timeout", Duration.ofSeconds(30)),
            node.duration("client_idle_timeout", Duration.ZERO),
            node.duration("idle_transaction_timeout", Duration.ZERO),
            node.duration("query_timeout", Duration.ZERO),
            node.integer("max_client_prepared_statements", 10_000, 1, 10_000_000));
    node.rejectUnknownKeys();
    return limits;
  }

  private static ClientTls clientTls(ConfigNode node) throws ConfigException {
    ClientTls tls =
        new ClientTls(
            node.choice("mode", ClientTlsMode.class, ClientTlsMode.DISABLE),
            node.file("cert_file"),
            node.file("key_file"));
    if (tls.mode() != ClientTlsMode.DISABLE && (tls.certFile() == null || tls.keyFile() == null)) {
      throw new ConfigException(
          node.key(tls.certFile() == null ? "cert_file" : "key_file"),
          "is required when tls.client.mode is " + tls.mode().name().toLowerCase(Locale.ROOT));
    }
    node.rejectUnknownKeys();
    return tls;
  }

  private static ServerTls serverTls(ConfigNode node) throws ConfigException {
    ServerTls tls =
        new ServerTls(
            node.choice("mode", ServerTlsMode.class, ServerTlsMode.DISABLE), node.file("ca_file"));
    boolean verifies =
        tls.mode() == ServerTlsMode.VERIFY_CA || tls.mode() == ServerTlsMode.VERIFY_FULL;
    if (verifies && tls.caFile() == null) {
      throw new ConfigException(node.key("ca_file"), "is required to verify the server");
    }
    node.rejectUnknownKeys();
    return tls;
  }

  private static Map<String, User> users(ConfigNode node) throws ConfigException {
    Map<String, User> users = new LinkedHashMap<>();
    for (String name : node.fieldNames()) {
      ConfigNode user = node.child(name);
      users.put(
          name,
          new User(
              name, user.has("pool_mode") ? user.choice("pool_mode", PoolMode.class, null) : null));
      user.rejectUnknownKeys();
    }
    return Collections.unmodifiableMap(users);
  }

  private static Map<String, Database> databases(ConfigNode node) throws ConfigException {
    Map<String, Database> databases = new LinkedHashMap<>();
    for (String name : node.fieldNames()) {
      ConfigNode db = node.child(name);
      ConfigNode primaryNode = db.child("primary");
      if (!db.has("primary")) {
        throw new ConfigException(db.key("primary"), "is required");
      }
      primaryNode.requiredString("host");
      Endpoint primary = endpoint(primaryNode, null, 5432);
      List<Endpoint> replicas = new ArrayList<>();
      for (ConfigNode replica : db.list("replicas")) {
        replica.requiredString("host");
        replicas.add(endpoint(replica, null, 5432));
      }
      databases.put(
          name,
          new Database(
              name,
              db.string("dbname", name),
              primary,
              List.copyOf(replicas),
              db.string("user", null),
              db.string("password", null),
              db.has("pool_mode") ? db.choice("pool_mode", PoolMode.class, null) : null,
              db.integer("pool_size", 0, 0, 10_000),
              routing(db.child("routing"), !replicas.isEmpty())));
      db.rejectUnknownKeys();
    }
    if (databases.isEmpty()) {
      throw new ConfigException("databases", "at least one database is required");
    }
    return Collections.unmodifiableMap(databases);
  }
}
