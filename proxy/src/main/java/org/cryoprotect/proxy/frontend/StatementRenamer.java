package org.cryoprotect.proxy.frontend;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import java.util.HashMap;
import java.util.Map;
import java.util.function.IntSupplier;
import java.util.function.Supplier;
import org.cryoprotect.proxy.frontend.Pending.Kind;
import org.cryoprotect.proxy.metrics.ProxyMetrics;
import org.cryoprotect.proxy.pool.PooledServer;
import org.cryoprotect.proxy.pool.PreparedRegistry;
import org.cryoprotect.proxy.protocol.Frames;
import org.cryoprotect.proxy.protocol.SqlState;
import org.cryoprotect.proxy.protocol.backend.ErrorResponse;
import org.cryoprotect.proxy.protocol.backend.ErrorResponse.Severity;
import org.cryoprotect.proxy.protocol.frontend.Bind;
import org.cryoprotect.proxy.protocol.frontend.Parse;
import org.cryoprotect.proxy.protocol.frontend.Target;
import org.cryoprotect.proxy.sql.SqlScan;

/**
 * One client's prepared statements in transaction mode: the client's names map to proxy-wide names
 * ({@link PreparedRegistry}); Parse goes to a server connection only when it lacks the statement
 * (lazily, before the Bind or Describe that needs it); the client's Close is answered locally. In
 * session mode (or for unnamed statements) frames pass through unchanged.
 */
final class StatementRenamer {
  /** What the renamer needs from the session it works for. */
  interface Link {
    PooledServer server();

    ByteBufAllocator alloc();

    void write(ByteBuf frame);

    void expect(Pending reply);

    /** Queues a reply the proxy gives itself, in order with the server's. */
    void local(Pending reply);

    void noteEffects(SqlScan.Effects effects);

    /** A statement with these {@link SqlScan} transaction-control bits is about to run. */
    void noteControl(int bits);

    /**
     * Fails the client's batch at this point with {@code error}, as a server error would: the
     * server fails it too, so that nothing the batch did before commits.
     */
    void refuse(ErrorResponse error);
  }

  private final boolean rename;
  private final PreparedRegistry registry;
  private final IntSupplier perServer; // RELOAD may change it
  private final IntSupplier perClient; // limits.max_client_prepared_statements
  private final ProxyMetrics metrics;
  private final Supplier<String> context; // what fixes a text's meaning: search_path, role
  private final Map<String, PreparedRegistry.Entry> byName = new HashMap<>();
  private UnnamedStatement unnamed; // the client's unnamed statement (transaction mode), or null

  StatementRenamer(
      boolean rename,
      PreparedRegistry registry,
      IntSupplier perServer,
      IntSupplier perClient,
      ProxyMetrics metrics,
      Supplier<String> context) {
    this.rename = rename;
    this.registry = registry;
    this.perServer = perServer;
    this.perClient = perClient;
    this.metrics = metrics;
    this.context = context;
  }

  PreparedRegistry registry() {
    return registry;
  }

  /** The registry entry for a client's Parse of {@code query} now. */
  PreparedRegistry.Entry register(Parse parse) {
    return registry.register(parse.query(), parse.paramTypes(), context.get());
  }

  /** The client's statement names; cleared when DISCARD/DEALLOCATE ALL removes them. */
  Map<String, PreparedRegistry.Entry> byName() {
    return byName;
  }

  /*
   * What survives a Sync, and so must follow the client from server connection to server
   * connection (protocol docs, "Extended Query"): named statements (until Close) and the unnamed
   * statement (until the next Parse of "" or simple Query). Portals, named or not, end with their
   * transaction, and inside a transaction the server connection stays the client's, so they need
   * nothing.
   */

  void parse(ByteBuf frame, Link link) {
    int queryEnd = Parse.unnamedQueryEnd(frame);
    if (queryEnd >= 0
        && SqlScan.isPlain(frame, frame.readerIndex() + Frames.HEADER + 1, queryEnd)) {
      parseUnnamed(frame, null, link); // the usual unnamed Parse: not decoded
      return;
    }
    Parse parse = Parse.decode(Frames.body(frame));
    if (!rename || parse.name().isEmpty()) {
      link.noteEffects(SqlScan.scan(parse.query()));
      parseUnnamed(frame, parse, link);
      return;
    }
    frame.release();
    PreparedRegistry.Entry entry = register(parse);
    PreparedRegistry.Entry existing = byName.get(parse.name());
    if (existing != null) {
      duplicate(existing, parse.name(), link);
      return;
    }
    if (byName.size() >= perClient.getAsInt()) {
      link.refuse(
          ErrorResponse.of(
              Severity.ERROR,
              SqlState.PROGRAM_LIMIT_EXCEEDED,
              "too many prepared statements: this session holds "
                  + byName.size()
                  + " (limits.max_client_prepared_statements); close some first"));
      return;
    }
    byName.put(parse.name(), entry);
    if (link.server().hasPrepared(entry.name())) {
      Pending local = new Pending(Kind.LOCAL_PARSE_COMPLETE, true, null);
      local.entry = entry; // the name is undone if the server skips this point of the batch
      local.clientName = parse.name();
      link.local(local);
    } else {
      prepareOnServer(entry, parse.name(), link);
    }
  }

  /** A Parse of "" (or any Parse in session mode) goes to the server as it is. */
  private void parseUnnamed(ByteBuf frame, Parse decoded, Link link) {
    Pending pending = new Pending(Kind.PARSE, true, null);
    if (rename) {
      UnnamedStatement made = UnnamedStatement.of(frame, unnamed, decoded);
      pending.unnamed = made;
      pending.previous = unnamed;
      unnamed = made;
      link.server().unnamed(made);
    }
    link.expect(pending);
    link.write(frame);
  }

  /**
   * A Parse of a name the client already has: PostgreSQL answers 42P05 and the rest of the batch is
   * skipped. The server says it (with the transaction semantics exact: an open transaction fails),
   * by receiving the proxy-named Parse once more; the error is reworded with the client's name.
   */
  private void duplicate(PreparedRegistry.Entry existing, String clientName, Link link) {
    ensurePrepared(existing, link);
    Pending parse = new Pending(Kind.PARSE, true, null);
    parse.duplicateOf = clientName;
    link.expect(parse);
    link.write(existing.parse().encode(link.alloc()));
  }

  void bind(ByteBuf frame, Link link) {
    String name = rename ? Bind.statement(frame) : "";
    PreparedRegistry.Entry entry = name.isEmpty() ? null : byName.get(name);
    if (entry == null) {
      if (rename && name.isEmpty()) {
        ensureUnnamed(link);
      }
      link.expect(new Pending(Kind.BIND, true, null)); // unnamed, or unknown: the server says so
      link.write(frame);
      return;
    }
    link.noteEffects(entry.effects());
    link.noteControl(entry.control());
    ensurePrepared(entry, link);
    ByteBuf renamed = Bind.withStatement(link.alloc(), frame, entry.name());
    frame.release();
    link.expect(new Pending(Kind.BIND, true, entry.name()));
    link.write(renamed);
  }

  void describe(ByteBuf frame, Link link) {
    Target target = Target.decode('D', Frames.body(frame));
    PreparedRegistry.Entry entry =
        rename && target.isStatement() ? byName.get(target.name()) : null;
    if (entry == null) {
      if (rename && target.isStatement() && target.name().isEmpty()) {
        ensureUnnamed(link);
      }
      link.expect(new Pending(Kind.DESCRIBE, true, null));
      link.write(frame);
      return;
    }
    frame.release();
    ensurePrepared(entry, link);
    link.expect(new Pending(Kind.DESCRIBE, true, null));
    link.write(target.withName(entry.name()).encode(link.alloc()));
  }

  void close(ByteBuf frame, Link link) {
    Target target = Target.decode('C', Frames.body(frame));
    if (rename && target.isStatement() && !target.name().isEmpty()) {
      // Other clients may share the server-side statement: the client's name is what goes away.
      frame.release();
      Pending local = new Pending(Kind.LOCAL_CLOSE_COMPLETE, true, null);
      local.entry = byName.remove(target.name()); // back if the server skips this point
      local.clientName = target.name();
      link.local(local);
      return;
    }
    Pending close = new Pending(Kind.CLOSE, true, null);
    if (rename && target.isStatement()) {
      close.closed = "";
      close.previous = unnamed;
      unnamed = null;
      link.server().unnamed(null);
    }
    link.expect(close);
    link.write(frame);
  }

  /**
   * Makes the server's unnamed statement the client's own before a Bind or Describe of "": Parse it
   * again where another client's (or nobody's) is there, or Close the server's when the client has
   * none, so that the server answers 26000 as it would have.
   */
  private void ensureUnnamed(Link link) {
    PooledServer server = link.server();
    Object there = server.unnamed();
    if (unnamed != null) {
      link.noteControl(unnamed.control());
    }
    if (there == unnamed) {
      return;
    }
    if (unnamed == null) {
      Pending close = new Pending(Kind.CLOSE, false, null);
      close.closed = "";
      link.expect(close);
      link.write(new Target('C', Target.STATEMENT, "").encode(link.alloc()));
    } else {
      Pending parse = new Pending(Kind.PARSE, false, null);
      parse.unnamed = unnamed;
      parse.previous = unnamed;
      link.expect(parse);
      link.write(unnamed.encode(link.alloc()));
    }
    server.unnamed(unnamed);
  }

  // ---------------------------------------------------------------- for the result cache

  /** The Parse that made the client's statement {@code name} ("" = unnamed), or null. */
  Parse statement(String name) {
    if (name.isEmpty()) {
      return unnamed == null ? null : unnamed.decode();
    }
    PreparedRegistry.Entry entry = byName.get(name);
    return entry == null ? null : entry.parse();
  }

  /**
   * Whether a Parse answered from the cache can make its statement without a server: an unnamed one
   * always, a named one when the name is free and a server of this database accepted the text.
   */
  boolean canAdopt(Parse parse) {
    return !rename
        || parse.name().isEmpty()
        || !byName.containsKey(parse.name()) && register(parse).verified();
  }

  /** A Parse answered from the cache: the statement is the client's, made on a server later. */
  void adopt(ByteBuf frame, Parse parse) {
    if (!rename) {
      return;
    }
    if (parse.name().isEmpty()) {
      unnamed = UnnamedStatement.of(frame, unnamed, parse);
    } else {
      byName.put(parse.name(), register(parse));
    }
  }

  /** A simple Query answered from the cache: PostgreSQL drops the unnamed statement. */
  void queriedWithoutServer() {
    unnamed = null;
  }

  /** A simple Query ran: PostgreSQL drops the unnamed statement. */
  void queried(PooledServer server) {
    unnamed = null;
    server.unnamed(null);
  }

  /**
   * The server refused {@code p}, the message that failed its batch, or skipped it ({@code
   * skipped}) after that failure: what it recorded is undone. A Parse makes no statement; a Close
   * closed nothing, so the client's statement is its own again and the server's is closed before it
   * is parsed anew; the server's unnamed statement is unknown after either.
   */
  void undo(Pending p, PooledServer server, boolean skipped) {
    switch (p.kind) {
      case PARSE, LOCAL_PARSE_COMPLETE -> parseFailed(p, server, skipped);
      case LOCAL_CLOSE_COMPLETE -> {
        if (p.entry != null && !byName.containsKey(p.clientName)) {
          byName.put(p.clientName, p.entry);
        }
      }
      case CLOSE -> {
        if (!skipped || p.closed == null) {
          return; // a Close that failed changed nothing either; the proxy's record is kept
        }
        if (!p.closed.isEmpty()) {
          server.invalidatePrepared(p.closed);
          return;
        }
        server.unnamed(PooledServer.UNKNOWN_UNNAMED);
        if (unnamed == null) {
          unnamed = p.previous;
        }
      }
      default -> {}
    }
  }

  /** The server refused (or skipped, with {@code skipped}) the Parse of {@code p}. */
  private void parseFailed(Pending p, PooledServer server, boolean skipped) {
    if (p.statement != null) {
      server.forgetPrepared(p.statement);
    }
    if (p.clientName != null && byName.get(p.clientName) == p.entry) {
      byName.remove(p.clientName); // PostgreSQL makes no statement of a failed Parse
    }
    if (p.unnamed == null) {
      return;
    }
    if (skipped) {
      // The server never read it: it holds what it held before, which the proxy no longer knows.
      server.unnamed(PooledServer.UNKNOWN_UNNAMED);
      if (unnamed == p.unnamed) {
        unnamed = p.previous;
      }
    } else {
      server.unnamed(null); // PostgreSQL drops the old unnamed statement before parsing
      if (unnamed == p.unnamed) {
        unnamed = null;
      }
    }
  }

  private void ensurePrepared(PreparedRegistry.Entry entry, Link link) {
    if (!link.server().hasPrepared(entry.name())) {
      prepareOnServer(entry, null, link);
    }
  }

  /** Sends the proxy-named Parse; its ParseComplete goes to the client only if it asked. */
  private void prepareOnServer(PreparedRegistry.Entry entry, String clientName, Link link) {
    PooledServer server = link.server();
    if (server.takeCloseBeforeParse(entry.name())) {
      closeOnServer(entry.name(), link);
    }
    String evicted = server.addPrepared(entry.name(), perServer.getAsInt());
    if (evicted != null) {
      closeOnServer(evicted, link);
      metrics.preparedEviction();
    }
    metrics.serverPrepare();
    Pending parse = new Pending(Kind.PARSE, clientName != null, entry.name());
    parse.entry = entry;
    parse.clientName = clientName;
    link.expect(parse);
    link.write(entry.parse().encode(link.alloc()));
  }

  private static void closeOnServer(String statement, Link link) {
    Pending close = new Pending(Kind.CLOSE, false, null);
    close.closed = statement; // still there if the server skips this Close
    link.expect(close);
    link.write(new Target('C', Target.STATEMENT, statement).encode(link.alloc()));
  }
}
