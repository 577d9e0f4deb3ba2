package org.cryoprotect.proxy.frontend;

import io.netty.buffer.ByteBuf;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.cryoprotect.proxy.cache.ResultCache;
import org.cryoprotect.proxy.config.ProxyConfig;
import org.cryoprotect.proxy.config.ProxyConfig.Database;
import org.cryoprotect.proxy.metrics.PoolStats;
import org.cryoprotect.proxy.pool.PoolClient;
import org.cryoprotect.proxy.pool.PooledServer;
import org.cryoprotect.proxy.pool.ServerPool;
import org.cryoprotect.proxy.protocol.Frames;
import org.cryoprotect.proxy.protocol.SqlState;
import org.cryoprotect.proxy.protocol.backend.ErrorResponse;
import org.cryoprotect.proxy.protocol.backend.ErrorResponse.Severity;
import org.cryoprotect.proxy.protocol.backend.ReadyForQuery;
import org.cryoprotect.proxy.protocol.frontend.Query;

/**
 * The admin console: database {@code cryoproxy} (or {@code pgbouncer}) for the users in {@code
 * auth.admin_users}, and to look only (SHOW) for those in {@code auth.stats_users}. PgBouncer's
 * commands with PgBouncer's column names, so its runbooks, psql habits and exporters work: SHOW
 * POOLS|CLIENTS|SERVERS|STATS|DATABASES|CONFIG|VERSION, PAUSE, RESUME, RELOAD, KILL, SHUTDOWN.
 * Simple query protocol only, as PgBouncer.
 */
final class AdminConsole extends ChannelInboundHandlerAdapter {
  /** What a user of {@code auth.stats_users} may run; every other command needs admin_users. */
  static final Set<String> READ_ONLY_VERBS = Set.of("", "SET", "SHOW");

  static final List<String> NAMES = List.of("cryoproxy", "pgbouncer");
  private static final DateTimeFormatter TIME =
      DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm:ss z").withZone(ZoneOffset.UTC);

  private final Frontend frontend;
  private final ClientConnection client;

  AdminConsole(Frontend frontend, ClientConnection client) {
    this.frontend = frontend;
    this.client = client;
  }

  @Override
  public void handlerAdded(ChannelHandlerContext ctx) {
    Map<String, String> parameters = new LinkedHashMap<>();
    // Drivers parse this as a PostgreSQL version: claim a modern one, name the proxy after it.
    parameters.put("server_version", "18.0 (CryoProxy " + version() + " admin console)");
    parameters.put("server_encoding", "UTF8");
    parameters.put("client_encoding", "UTF8");
    parameters.put("DateStyle", "ISO, MDY");
    parameters.put("integer_datetimes", "on");
    parameters.put("standard_conforming_strings", "on");
    client.welcome(ctx, parameters, frontend.loggedIn());
  }

  @Override
  public void channelRead(ChannelHandlerContext ctx, Object msg) {
    ByteBuf frame = (ByteBuf) msg;
    try {
      byte type = Frames.type(frame);
      if (type == 'X') {
        client.closeReason("client terminated");
        ctx.close();
      } else if (type == 'Q') {
        String sql = Query.textOrNull(frame);
        run(ctx, sql == null ? "" : sql);
      } else if (type == 'S') {
        ctx.writeAndFlush(new ReadyForQuery(ReadyForQuery.IDLE).encode(ctx.alloc()));
      } else if (type != 'H'
          && type != 'P'
          && type != 'B'
          && type != 'D'
          && type != 'E'
          && type != 'C') {
        client.fatal(SqlState.PROTOCOL_VIOLATION, "invalid message type on the admin console");
      } else if (type == 'P') {
        // Extended protocol is refused once per batch; the rest of it up to Sync is ignored.
        error(ctx, SqlState.FEATURE_NOT_SUPPORTED, "the admin console takes simple queries only");
      }
    } finally {
      frame.release();
    }
  }

  @Override
  public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
    ClientErrors.handle(client, cause);
  }

  private void run(ChannelHandlerContext ctx, String sql) {
    String command = sql.trim().replaceAll(";\\s*$", "").trim();
    String[] words = command.split("\\s+");
    String verb = words[0].toUpperCase(Locale.ROOT);
    String arg = words.length > 1 ? words[1] : null;
    try {
      if (!READ_ONLY_VERBS.contains(verb)
          && !frontend.config().auth().adminUsers().contains(client.user())) {
        // auth.stats_users (PgBouncer's stats_users): the console, to look only
        error(
            ctx,
            SqlState.INSUFFICIENT_PRIVILEGE,
            "permission denied: " + verb + " needs a user in auth.admin_users");
        ready(ctx);
        return;
      }
      switch (verb) {
        case "" -> ctx.write(Query.empty(ctx.alloc(), 'I'));
        case "SET" -> complete(ctx, "SET"); // drivers' session setup; nothing to change here
        case "SHOW" -> show(ctx, arg == null ? "" : arg.toUpperCase(Locale.ROOT));
        case "PAUSE" -> pause(ctx, arg);
        case "RESUME" -> {
          frontend.pools().resume(arg);
          complete(ctx, "RESUME");
        }
        case "RELOAD" -> {
          reload(ctx);
          return; // answered when the control plane is done
        }
        case "KILL" -> kill(ctx, arg);
        case "CACHE" -> cacheFlush(ctx, arg, words.length > 2 ? words[2] : null);
        case "SHUTDOWN" -> {
          complete(ctx, "SHUTDOWN");
          ready(ctx);
          frontend.admin().shutdown();
          return;
        }
        default -> error(ctx, SqlState.SYNTAX_ERROR, "unknown command: " + command);
      }
    } catch (Exception e) {
      error(ctx, SqlState.FEATURE_NOT_SUPPORTED, verb + " failed: " + e.getMessage());
    }
    if (!verb.equals("PAUSE") || !ctx.channel().isActive()) {
      ready(ctx);
    }
  }

  private Collection<ServerPool> pools(String database) {
    return frontend.pools().select(database);
  }

  /** PAUSE answers once every server connection of the selected pools is back in the pool. */
  private void pause(ChannelHandlerContext ctx, String database) {
    waitForIdle(ctx, frontend.pools().pause(database));
  }

  private void waitForIdle(ChannelHandlerContext ctx, Collection<ServerPool> selected) {
    boolean busy = selected.stream().anyMatch(p -> p.stats().active() > 0);
    if (!busy || !ctx.channel().isActive()) {
      complete(ctx, "PAUSE");
      ready(ctx);
      return;
    }
    ctx.executor().schedule(() -> waitForIdle(ctx, selected), 50, TimeUnit.MILLISECONDS);
  }

  /**
   * RELOAD runs on the control plane, not on this event loop; the console reads nothing more from
   * this client until it answers, so replies stay in order.
   */
  private void reload(ChannelHandlerContext ctx) {
    ctx.channel().config().setAutoRead(false);
    frontend
        .admin()
        .reload()
        .whenComplete(
            (applied, error) ->
                ctx.executor()
                    .execute(
                        () -> {
                          if (error == null) {
                            complete(ctx, "RELOAD");
                          } else {
                            Throwable why =
                                error instanceof java.util.concurrent.CompletionException
                                        && error.getCause() != null
                                    ? error.getCause()
                                    : error;
                            error(
                                ctx,
                                SqlState.FEATURE_NOT_SUPPORTED,
                                "RELOAD failed: " + why.getMessage());
                          }
                          ready(ctx);
                          ctx.channel().config().setAutoRead(true);
                        }));
  }

  /** KILL db: ends the database's clients and closes its server connections. */
  private void kill(ChannelHandlerContext ctx, String database) {
    if (database == null) {
      error(ctx, SqlState.SYNTAX_ERROR, "KILL needs a database name");
      return;
    }
    for (ServerPool pool : pools(database)) {
      for (PoolClient c : List.copyOf(pool.clients())) {
        c.kill("terminated by KILL " + database + " from the admin console");
      }
      for (PooledServer s : pool.servers()) {
        s.channel().close();
      }
    }
    complete(ctx, "KILL");
  }

  private void show(ChannelHandlerContext ctx, String what) {
    switch (what) {
      case "POOLS" -> showPools(ctx);
      case "CLIENTS" -> showClients(ctx);
      case "SERVERS" -> showServers(ctx);
      case "STATS" -> showStats(ctx);
      case "DATABASES" -> showDatabases(ctx);
      case "CONFIG" -> showConfig(ctx);
      case "CACHE" -> showCache(ctx);
      case "VERSION" -> {
        Table t = new Table("version");
        t.row("CryoProxy " + version());
        t.write(ctx, "SHOW");
      }
      default ->
          error(
              ctx,
              SqlState.SYNTAX_ERROR,
              "SHOW takes POOLS, CLIENTS, SERVERS, STATS, DATABASES, CONFIG, CACHE or VERSION");
    }
  }

  private void showPools(ChannelHandlerContext ctx) {
    Table t =
        new Table(
            "database",
            "user",
            "cl_active",
            "cl_waiting",
            "cl_active_cancel_req",
            "cl_waiting_cancel_req",
            "sv_active",
            "sv_active_cancel",
            "sv_being_canceled",
            "sv_idle",
            "sv_used",
            "sv_tested",
            "sv_login",
            "maxwait",
            "maxwait_us",
            "pool_mode");
    for (ServerPool pool : frontend.pools().all()) {
      PoolStats s = pool.poolStats();
      String mode = "transaction";
      Database db = frontend.config().databases().get(pool.key().database());
      if (db != null) {
        mode = frontend.config().poolMode(db, pool.key().role()).name().toLowerCase(Locale.ROOT);
      }
      t.row(
          s.database(),
          s.user(),
          s.clActive(),
          s.clWaiting(),
          0,
          0,
          s.svActive(),
          s.svActiveCancel(),
          s.svBeingCanceled(),
          s.svIdle(),
          s.svUsed(),
          s.svTested(),
          s.svLogin(),
          s.maxWaitMicros() / 1_000_000,
          s.maxWaitMicros() % 1_000_000,
          mode);
    }
    t.write(ctx, "SHOW");
  }

  private void showClients(ChannelHandlerContext ctx) {
    Table t =
        new Table(
            "type",
            "user",
            "database",
            "state",
            "addr",
            "port",
            "connect_time",
            "wait",
            "wait_us",
            "remote_pid",
            "tls",
            "application_name",
            "prepared_statements");
    for (ServerPool pool : frontend.pools().all()) {
      for (PoolClient c : pool.clients()) {
        String[] addr = c.address().split(":(?=\\d+$)");
        t.row(
            "C",
            c.user(),
            c.database(),
            c.state(),
            addr[0],
            addr.length > 1 ? addr[1] : "",
            TIME.format(Instant.ofEpochMilli(c.connectedAtMillis())),
            0,
            0,
            c.serverPid(),
            c.tls() ? "TLS" : "",
            c.applicationName(),
            c.preparedStatements());
      }
    }
    t.write(ctx, "SHOW");
  }

  private void showServers(ChannelHandlerContext ctx) {
    Table t =
        new Table(
            "type",
            "user",
            "database",
            "state",
            "addr",
            "port",
            "remote_pid",
            "prepared_statements");
    for (ServerPool pool : frontend.pools().all()) {
      for (PooledServer s : pool.servers()) {
        t.row(
            "S",
            pool.key().role(),
            pool.key().database(),
            pool.stateLabel(s),
            s.node().host(),
            s.node().port(),
            s.connection().keyData().processId(),
            s.preparedCount());
      }
    }
    t.write(ctx, "SHOW");
  }

  /** The result cache: a row for all of it, then one per rule (and "hint" for hinted queries). */
  private void showCache(ChannelHandlerContext ctx) {
    ResultCache cache = frontend.cache();
    Table t = new Table("rule", "entries", "bytes", "max_bytes", "hits", "misses", "hit_ratio");
    t.row(
        "*",
        cache.entryCount(),
        cache.bytes(),
        cache.maxSize(),
        cache.hits(),
        cache.misses(),
        ratio(cache.hits(), cache.misses()));
    for (ResultCache.RuleStats r : cache.ruleStats()) {
      t.row(
          r.rule(),
          r.entries(),
          r.bytes(),
          cache.maxSize(),
          r.hits(),
          r.misses(),
          ratio(r.hits(), r.misses()));
    }
    t.write(ctx, "SHOW");
  }

  private static String ratio(long hits, long misses) {
    return hits + misses == 0
        ? ""
        : String.format(Locale.ROOT, "%.4f", hits / (double) (hits + misses));
  }

  /** CACHE FLUSH: every entry; CACHE FLUSH schema.table: the entries that read that table. */
  private void cacheFlush(ChannelHandlerContext ctx, String what, String table) {
    if (what == null || !what.equalsIgnoreCase("FLUSH")) {
      error(ctx, SqlState.SYNTAX_ERROR, "CACHE takes FLUSH [schema.table]");
      return;
    }
    if (table == null) {
      frontend.cache().flush(null, ResultCache.SOURCE_ADMIN);
    } else {
      String name = table.replaceAll(";$", "");
      name = name.contains("\"") ? name.replace("\"", "") : name.toLowerCase(Locale.ROOT);
      frontend.cache().invalidate(null, name, ResultCache.SOURCE_ADMIN);
    }
    complete(ctx, "CACHE FLUSH");
  }

  private void showStats(ChannelHandlerContext ctx) {
    Table t =
        new Table(
            "database",
            "total_xact_count",
            "total_query_count",
            "total_received",
            "total_sent",
            "total_xact_time",
            "total_query_time",
            "total_wait_time");
    Map<String, long[]> byDb = new LinkedHashMap<>();
    for (ServerPool pool : frontend.pools().all()) {
      ServerPool.Stats s = pool.stats();
      long[] sum = byDb.computeIfAbsent(pool.key().database(), k -> new long[7]);
      sum[0] += s.transactions();
      sum[1] += s.queries();
      sum[2] += s.bytesReceived();
      sum[3] += s.bytesSent();
      sum[4] += s.transactionNanos() / 1000;
      sum[5] += s.queryNanos() / 1000;
      sum[6] += s.waitedNanosTotal() / 1000;
    }
    byDb.forEach((db, v) -> t.row(db, v[0], v[1], v[2], v[3], v[4], v[5], v[6]));
    t.write(ctx, "SHOW");
  }

  private void showDatabases(ChannelHandlerContext ctx) {
    ProxyConfig config = frontend.config();
    Table t =
        new Table(
            "name",
            "host",
            "port",
            "database",
            "force_user",
            "pool_size",
            "min_pool_size",
            "reserve_pool",
            "server_lifetime",
            "pool_mode",
            "max_connections",
            "current_connections",
            "paused",
            "disabled");
    for (Database db : config.databases().values()) {
      int current = 0;
      boolean paused = false;
      for (ServerPool pool : pools(db.name())) {
        ServerPool.Stats s = pool.stats();
        current += s.open();
        paused |= s.paused();
      }
      t.row(
          db.name(),
          db.primary().host(),
          db.primary().port(),
          db.dbname(),
          db.user() == null ? "" : db.user(),
          config.poolSize(db),
          config.pool().minIdle(),
          config.pool().reserveSize(),
          config.pool().serverLifetime().toSeconds(),
          (db.poolMode() != null ? db.poolMode() : config.pool().mode())
              .name()
              .toLowerCase(Locale.ROOT),
          config.pool().maxDbConnections(),
          current,
          paused ? 1 : 0,
          0);
    }
    t.write(ctx, "SHOW");
  }

  private void showConfig(ChannelHandlerContext ctx) {
    ProxyConfig c = frontend.config();
    Table t = new Table("key", "value", "default", "changeable");
    t.row("listen", c.listen().toString(), "127.0.0.1:6432", "no");
    t.row("auth.type", c.auth().type().name().toLowerCase(Locale.ROOT), "trust", "no");
    t.row("pool.mode", c.pool().mode().name().toLowerCase(Locale.ROOT), "session", "yes");
    t.row("pool.size", c.pool().size(), 20, "yes");
    t.row("pool.min_idle", c.pool().minIdle(), 0, "yes");
    t.row("pool.reserve_size", c.pool().reserveSize(), 0, "yes");
    t.row("pool.reserve_timeout", c.pool().reserveTimeout().toMillis() + "ms", "5000ms", "yes");
    t.row("pool.max_db_connections", c.pool().maxDbConnections(), 0, "yes");
    t.row("pool.wait_timeout", c.pool().waitTimeout().toMillis() + "ms", "30000ms", "yes");
    t.row("pool.server_lifetime", c.pool().serverLifetime().toSeconds() + "s", "3600s", "yes");
    t.row(
        "pool.server_idle_timeout", c.pool().serverIdleTimeout().toSeconds() + "s", "600s", "yes");
    t.row(
        "pool.server_check_delay", c.pool().serverCheckDelay().toMillis() + "ms", "30000ms", "yes");
    t.row("pool.prepared_statements_per_server", c.pool().preparedPerServer(), 1000, "yes");
    t.row("limits.max_client_connections", c.limits().maxClientConnections(), 10000, "yes");
    t.row("limits.max_message_size", c.limits().maxMessageSize(), 67108864, "yes");
    // Breakers are built with the node's first use: these need a restart.
    ProxyConfig.Resilience r = c.resilience();
    t.row("resilience.breaker.failure_rate", r.failureRate(), 50, "no");
    t.row("resilience.breaker.slow_call", r.slowCall().toMillis() + "ms", "5000ms", "no");
    t.row("resilience.breaker.minimum_calls", r.minimumCalls(), 5, "no");
    t.row("resilience.breaker.window", r.window(), 20, "no");
    t.row("resilience.breaker.open_for", r.openFor().toMillis() + "ms", "5000ms", "no");
    t.row("resilience.breaker.half_open_calls", r.halfOpenCalls(), 2, "no");
    t.row("resilience.retry.attempts", r.retryAttempts(), 4, "no");
    t.row("resilience.retry.backoff", r.retryBackoff().toMillis() + "ms", "50ms", "no");
    t.row("resilience.retry.max_backoff", r.retryMaxBackoff().toMillis() + "ms", "1000ms", "no");
    t.write(ctx, "SHOW");
  }

  private void complete(ChannelHandlerContext ctx, String tag) {
    ByteBuf buf = ctx.alloc().buffer();
    int at = Frames.begin(buf, 'C');
    Frames.writeCString(buf, tag);
    ctx.write(Frames.finish(buf, at));
  }

  private void ready(ChannelHandlerContext ctx) {
    ctx.writeAndFlush(new ReadyForQuery(ReadyForQuery.IDLE).encode(ctx.alloc()));
  }

  private void error(ChannelHandlerContext ctx, SqlState state, String message) {
    ctx.write(ErrorResponse.of(Severity.ERROR, state, message).encode(ctx.alloc()));
  }

  private static String version() {
    String v = AdminConsole.class.getPackage().getImplementationVersion();
    return v == null ? "development" : v;
  }

  /** A result set in text format: RowDescription, DataRows, CommandComplete. */
  private static final class Table {
    private final String[] columns;
    private final List<Object[]> rows = new ArrayList<>();

    Table(String... columns) {
      this.columns = columns;
    }

    void row(Object... values) {
      rows.add(values);
    }

    void write(ChannelHandlerContext ctx, String tag) {
      ByteBuf buf = ctx.alloc().buffer();
      int at = Frames.begin(buf, 'T');
      buf.writeShort(columns.length);
      Object[] first = rows.isEmpty() ? null : rows.get(0);
      for (int i = 0; i < columns.length; i++) {
        boolean numeric = first != null && first[i] instanceof Number;
        Frames.writeCString(buf, columns[i]);
        buf.writeInt(0).writeShort(0);
        buf.writeInt(numeric ? 20 : 25).writeShort(numeric ? 8 : -1).writeInt(-1).writeShort(0);
      }
      Frames.finish(buf, at);
      for (Object[] row : rows) {
        at = Frames.begin(buf, 'D');
        buf.writeShort(row.length);
        for (Object value : row) {
          byte[] text = String.valueOf(value).getBytes(java.nio.charset.StandardCharsets.UTF_8);
          buf.writeInt(text.length).writeBytes(text);
        }
        Frames.finish(buf, at);
      }
      at = Frames.begin(buf, 'C');
      Frames.writeCString(buf, tag);
      Frames.finish(buf, at);
      ctx.write(buf);
    }
  }
}
