package org.cryoprotect.proxy.frontend;

import io.netty.buffer.ByteBuf;
import java.util.Map;
import java.util.Set;
import org.cryoprotect.proxy.frontend.Pending.Kind;
import org.cryoprotect.proxy.protocol.Frames;
import org.cryoprotect.proxy.protocol.SqlState;
import org.cryoprotect.proxy.protocol.backend.DataRow;
import org.cryoprotect.proxy.protocol.backend.ErrorResponse;
import org.cryoprotect.proxy.protocol.backend.ErrorResponse.Severity;
import org.cryoprotect.proxy.protocol.backend.ParameterStatus;
import org.cryoprotect.proxy.protocol.backend.ReadyForQuery;
import org.cryoprotect.proxy.protocol.frontend.Query;
import org.cryoprotect.proxy.sql.SqlScan.Pin;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The server's side of a client session's conversation: each frame of the server connection it
 * holds is matched against the {@link ReplyQueue} (what the server still owes), forwarded or kept
 * from the client, and read where the session learns from it (ReadyForQuery's transaction status,
 * COPY, settings, the session-state probe, WAL positions, errors and what they skip).
 *
 * <p>Confined to the client's event loop: the pool delivers server frames there.
 */
final class ServerReplies {
  private static final Logger log = LoggerFactory.getLogger(ServerReplies.class);

  private final ClientSession s;

  ServerReplies(ClientSession session) {
    this.s = session;
  }

  /** One frame of the server connection the session holds, in the order the server sent them. */
  void frame(ByteBuf frame) {
    if (s.server == null) {
      frame.release(); // the connection was discarded meanwhile
      return;
    }
    byte type = Frames.type(frame);
    Pending head = s.pending.peek();
    switch (type) {
      case 'S' -> {
        ParameterStatus status = ParameterStatus.decode(Frames.body(frame));
        s.server.reported().put(status.name(), status.value());
        if (head != null && head.toClient && s.transactionMode) {
          s.settings.mayHaveChanged(); // a reported setting changed, maybe in a function
        }
        s.toClient(frame, head == null || head.toClient);
        return;
      }
      case 'N' -> {
        s.toClient(frame, head == null || head.toClient);
        return;
      }
      case 'A' -> {
        s.toClient(frame, true);
        return;
      }
      default -> {}
    }
    if (head == null) {
      if (type == 'E' && s.transactionMode && endsConnection(frame)) {
        return; // unsolicited: the backend ended while the client held it (idle in transaction)
      }
      log.debug("{}: reply '{}' nobody waited for", s.server, (char) type);
      s.toClient(frame, true);
      return;
    }
    if (s.trail != null && head.toClient && (type == 'C' || type == 'E')) {
      // An error of a Parse, Bind or Describe stops the Execute after it: that statement's record.
      Pending statement = head.sql != null || type != 'E' ? head : s.pending.executeBeforeSync();
      if (statement != null && statement.sql != null) {
        s.trail.completed(statement, frame, s.loop()::execute, s::auditDurable);
      }
    }
    if (type == 'E') {
      serverError(frame, head);
    } else {
      if (head.kind == Kind.SNAPSHOT && type == 'D') {
        s.settings.captured(DataRow.texts(Frames.body(frame)));
      } else if (head.kind == Kind.LSN && type == 'D') {
        s.unit.wrote(DataRow.texts(Frames.body(frame)).get(0));
      } else if (type == 'G') {
        s.copyIn = true;
        if (s.state == ClientState.CLOSED) {
          s.write(Query.copyFail(s.ctx.alloc(), "client disconnected")); // nobody sends the data
          s.server.channel().flush();
          s.copyIn = false;
        }
      } else if (type == 'C' && head.toClient) {
        commandComplete(frame);
      } else if (type == 'Z') {
        s.txStatus = ReadyForQuery.status(frame);
        if (head.toClient) {
          s.errorSent = false;
          s.controlSent = 0;
          if (s.reads != null) {
            s.reads.ready(s.txStatus); // writes invalidate before the client hears they are done
          }
        }
      }
      s.toClient(frame, head.toClient);
      if (head.kind.isLast(type)) {
        s.pending.poll();
        finished(head);
      }
    }
    s.answerLocally();
    if (type == 'Z' && s.pending.isEmpty() && s.server != null) {
      s.unitEnd.readyPoint();
    }
  }

  private void finished(Pending done) {
    if (done.toClient
        && (done.kind == Kind.QUERY || done.kind == Kind.SYNC || done.kind == Kind.FUNCTION)) {
      long now = System.nanoTime();
      s.unit.served(now);
      s.stats.answered(now, s.txStatus == ReadyForQuery.IDLE, s.unit.route());
    }
    if (done.kind == Kind.PARSE && done.entry != null) {
      done.entry.verified(true);
    } else if (done.kind == Kind.APPLY && !s.applyRefused) {
      s.server.applied(s.settings.desired());
    } else if (done.kind == Kind.SNAPSHOT) {
      s.server.applied(s.settings.captureDone());
      Set<Pin> added = s.pins.probed(s.settings.capturedPins());
      if (!added.isEmpty()) {
        log.debug(
            "client {} pinned to {} for {} (seen by the probe)",
            s.client.address(),
            s.server,
            added);
      }
    }
  }

  /**
   * DISCARD ALL and DEALLOCATE ALL remove every prepared statement on the server, the proxy's
   * included; the client's own are gone too, as it expects.
   */
  private void commandComplete(ByteBuf frame) {
    if (frame.getByte(frame.readerIndex() + Frames.HEADER) != 'D') {
      return;
    }
    String tag = Frames.readCString(Frames.body(frame));
    if (tag.equals("DISCARD ALL") || tag.equals("DEALLOCATE ALL")) {
      s.server.forgetAllPrepared();
      s.statements.byName().clear();
      s.pins.remove(Pin.PREPARE);
      if (tag.equals("DISCARD ALL")) {
        s.pins.clear();
        s.server.applied(Map.of());
        if (s.transactionMode) {
          s.settings.mayHaveChanged();
        }
      }
    }
  }

  /**
   * An ErrorResponse ends the failing message; in the extended protocol the server then skips
   * everything up to Sync, so what the proxy queued for those messages is dropped as well.
   */
  void serverError(ByteBuf frame, Pending head) {
    if (head.kind == Kind.LSN) {
      frame.release();
      s.unit.positionUnknown();
      return;
    }
    if (head.kind == Kind.INJECTED || head.kind == Kind.APPLY || head.kind == Kind.SNAPSHOT) {
      ErrorResponse error = ErrorResponse.decode('E', Frames.body(frame));
      frame.release();
      if (head.kind == Kind.APPLY
          && Severity.ERROR.name().equals(error.severity())
          && refusesSettings(error.sqlState())) {
        // The server refused one of the client's own settings (a bad startup option, a role it
        // may not take): the client's fault, answered as PostgreSQL answers it at login. The
        // connection is sound and its settings unchanged (the apply is one implicit transaction).
        s.applyRefused = true;
        s.moveTo(ClientState.CLOSED);
        s.client.sendAndClose(error.withSeverity(Severity.FATAL).encode(s.ctx.alloc()));
        return;
      }
      if (s.preparing
          && s.state != ClientState.CLOSED
          && s.prepareAttempts + 1 < Checkout.MAX_PREPARE_ATTEMPTS) {
        // Nothing of the client's reached this connection yet (it died, or was terminated,
        // while idle): drop it and borrow another.
        log.info("{}: check before use failed ({}), trying another", s.server, error.message());
        s.server.markBroken();
        s.loss.closed(s.server);
        return;
      }
      log.warn("{}: the proxy's own query failed: {}", s.server, error);
      s.server.markBroken();
      if (s.state != ClientState.CLOSED) {
        s.client.fatal(
            SqlState.CONNECTION_FAILURE,
            "could not restore session state on server connection: " + error.message());
      }
      return;
    }
    if (head.error != null) { // the proxy failed the batch on purpose: the client hears its reason
      frame.release();
      frame = head.error.encode(s.ctx.alloc());
    }
    boolean extended =
        head.kind != Kind.QUERY && head.kind != Kind.FUNCTION && head.kind != Kind.SYNC;
    String sqlState = ErrorResponse.sqlState(frame);
    // A replica's 25006 to a unit misjudged as a read: it runs again on the primary at its end.
    boolean misjudged = s.window.isOpen() && s.unit.misjudged(sqlState);
    if (!misjudged
        && sqlState != null
        && sqlState.length() == 5
        && s.state != ClientState.CLOSED) { // after the client left, nobody's error
      s.frontend.metrics().error(sqlState.substring(0, 2), "server");
    }
    if (s.transactionMode && endsConnection(frame)) {
      return;
    }
    if (head.kind == Kind.PARSE && head.duplicateOf != null) {
      frame = ClientErrors.duplicateStatement(frame, head.duplicateOf, s.ctx.alloc());
    }
    s.errorSent = true;
    if (head.kind == Kind.BIND && head.statement != null && ClientErrors.isStalePlan(frame)) {
      s.server.invalidatePrepared(head.statement);
    }
    s.toClient(frame, true);
    if (!extended) {
      return;
    }
    // Without the batch's Sync queued, the client sends the rest of the batch after the error (it
    // flushed, read the error, went on): the server discards all of it up to that Sync.
    s.serverSkipping = !s.pending.skipToSync(s.server, s.statements);
  }

  /**
   * Whether an error to the proxy's SET of the client's settings is about those settings: an
   * invalid value (22), an unknown parameter or a role it may not take (42), a parameter that
   * cannot change now (55P02), an unsupported value (0A). Any other error (XX000 from a backend in
   * a state PostgreSQL itself mishandles, say) is the server connection's, not the client's.
   */
  private static boolean refusesSettings(String sqlState) {
    return sqlState != null
        && (sqlState.startsWith("22")
            || sqlState.startsWith("42")
            || sqlState.startsWith("0A")
            || sqlState.equals("55P02"));
  }

  /**
   * A FATAL from the server (terminated, shutting down) ends that server connection, not the
   * client's session: what the client is told waits until the connection is gone, for what it means
   * depends on what was in flight ({@link #failUnit}). Consumes {@code frame} when true.
   */
  private boolean endsConnection(ByteBuf frame) {
    ErrorResponse fatal = ClientErrors.fatal(frame);
    if (fatal == null) {
      return false;
    }
    frame.release();
    s.lossError = fatal.withSeverity(Severity.ERROR);
    s.server.markBroken();
    s.server.channel().close();
    return true;
  }
}
