package org.cryoprotect.proxy.frontend;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import java.util.HashMap;
import java.util.Map;
import java.util.function.IntSupplier;
import org.cryoprotect.proxy.frontend.Pending.Kind;
import org.cryoprotect.proxy.metrics.ProxyMetrics;
import org.cryoprotect.proxy.pool.PooledServer;
import org.cryoprotect.proxy.pool.PreparedRegistry;
import org.cryoprotect.proxy.pool.SqlScan;
import org.cryoprotect.proxy.protocol.Frames;
import org.cryoprotect.proxy.protocol.frontend.Bind;
import org.cryoprotect.proxy.protocol.frontend.Parse;
import org.cryoprotect.proxy.protocol.frontend.Target;

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
    void local(Kind kind);

    void noteEffects(SqlScan.Effects effects);
  }

  private final boolean rename;
  private final PreparedRegistry registry;
  private final IntSupplier perServer; // RELOAD may change it
  private final ProxyMetrics metrics;
  private final Map<String, PreparedRegistry.Entry> byName = new HashMap<>();

  StatementRenamer(
      boolean rename, PreparedRegistry registry, IntSupplier perServer, ProxyMetrics metrics) {
    this.rename = rename;
    this.registry = registry;
    this.perServer = perServer;
    this.metrics = metrics;
  }

  /** The client's statement names; cleared when DISCARD/DEALLOCATE ALL removes them. */
  Map<String, PreparedRegistry.Entry> byName() {
    return byName;
  }

  void parse(ByteBuf frame, Link link) {
    int queryEnd = Parse.unnamedQueryEnd(frame);
    if (queryEnd >= 0
        && SqlScan.isPlain(frame, frame.readerIndex() + Frames.HEADER + 1, queryEnd)) {
      link.expect(new Pending(Kind.PARSE, true, null)); // the usual unnamed Parse: not decoded
      link.write(frame);
      return;
    }
    Parse parse = Parse.decode(Frames.body(frame));
    if (!rename || parse.name().isEmpty()) {
      link.noteEffects(SqlScan.scan(parse.query()));
      link.expect(new Pending(Kind.PARSE, true, null));
      link.write(frame);
      return;
    }
    frame.release();
    PreparedRegistry.Entry entry = registry.register(parse.query(), parse.paramTypes());
    byName.put(parse.name(), entry);
    if (link.server().hasPrepared(entry.name())) {
      link.local(Kind.LOCAL_PARSE_COMPLETE);
    } else {
      prepareOnServer(entry, true, link);
    }
  }

  void bind(ByteBuf frame, Link link) {
    String name = rename ? Bind.statement(frame) : "";
    PreparedRegistry.Entry entry = name.isEmpty() ? null : byName.get(name);
    if (entry == null) {
      link.expect(new Pending(Kind.BIND, true, null)); // unnamed, or unknown: the server says so
      link.write(frame);
      return;
    }
    link.noteEffects(entry.effects());
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
      byName.remove(target.name());
      link.local(Kind.LOCAL_CLOSE_COMPLETE);
      return;
    }
    link.expect(new Pending(Kind.CLOSE, true, null));
    link.write(frame);
  }

  private void ensurePrepared(PreparedRegistry.Entry entry, Link link) {
    if (!link.server().hasPrepared(entry.name())) {
      prepareOnServer(entry, false, link);
    }
  }

  /** Sends the proxy-named Parse; its ParseComplete goes to the client only if it asked. */
  private void prepareOnServer(PreparedRegistry.Entry entry, boolean clientAsked, Link link) {
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
    Pending parse = new Pending(Kind.PARSE, clientAsked, entry.name());
    parse.entry = entry;
    link.expect(parse);
    link.write(entry.parse().encode(link.alloc()));
  }

  private static void closeOnServer(String statement, Link link) {
    link.expect(new Pending(Kind.CLOSE, false, null));
    link.write(new Target('C', Target.STATEMENT, statement).encode(link.alloc()));
  }
}
