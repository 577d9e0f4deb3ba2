package org.cryoprotect.proxy.frontend;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import io.netty.buffer.ByteBuf;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.ArrayDeque;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.Map;
import java.util.function.Consumer;
import org.cryoprotect.proxy.audit.Audit;
import org.cryoprotect.proxy.audit.AuditRecord;
import org.cryoprotect.proxy.auth.TokenVerifier;
import org.cryoprotect.proxy.protocol.Frames;
import org.cryoprotect.proxy.protocol.backend.ErrorResponse;
import org.cryoprotect.proxy.protocol.frontend.Parse;
import org.cryoprotect.proxy.protocol.frontend.Query;

/**
 * The audit side of one audited session (DESIGN §6). It knows the text of what the client runs (a
 * Query's text; for an Execute, the text of the statement its portal was bound to) and turns each
 * completion the server sends (CommandComplete, or the ErrorResponse of a statement) into a record.
 * While a record is not yet on disk, everything the client would be sent waits here in order, so
 * the client never hears a statement completed before its record is durable. Confined to the
 * session's event loop.
 */
final class AuditTrail {
  private static final ObjectMapper JSON = new ObjectMapper();
  private final Audit audit;
  private final ClientConnection client;
  private final Map<String, String> statements = new HashMap<>(); // client's name -> text
  private final Map<String, Portal> portals = new HashMap<>();

  /** What a portal runs: the statement's text and, when recorded, the values bound to it. */
  record Portal(String sql, String parameters) {}

  private final ArrayDeque<ByteBuf> held = new ArrayDeque<>();
  private long journaling; // records appended and not yet durable

  AuditTrail(Audit audit, ClientConnection client) {
    this.audit = audit;
    this.client = client;
  }

  /** Audited work must be refused now (53400): the journal is full and fails closed. */
  boolean refusing() {
    return audit.refusing();
  }

  // ---------------------------------------------------------------- what the client runs

  /** The text a simple Query runs. */
  String query(ByteBuf frame) {
    String sql = Query.textOrNull(frame);
    return sql == null ? "" : sql;
  }

  /** Before the renamer rewrites it: remembers the statement's text under the client's name. */
  void parsed(ByteBuf frame) {
    Parse parse = Parse.decode(Frames.body(frame));
    statements.put(parse.name(), parse.query());
  }

  /** Before the renamer rewrites it: the portal runs the statement's text. */
  void bound(ByteBuf frame) {
    ByteBuf body = Frames.body(frame);
    String portal = Frames.readCString(body);
    String statement = Frames.readCString(body);
    String sql = statements.getOrDefault(statement, "<statement " + statement + ">");
    portals.put(portal, new Portal(sql, audit.recordsParameters() ? parameters(body) : null));
  }

  /**
   * The values of a Bind, its body read past the two names, as a JSON array: text-format values as
   * sent, binary ones as {@code \x} and hex, SQL NULL as null; "malformed" when the message is (the
   * server refuses it).
   */
  static String parameters(ByteBuf body) {
    try {
      int formats = body.readUnsignedShort();
      short[] format = new short[formats];
      for (int i = 0; i < formats; i++) {
        format[i] = body.readShort();
      }
      int count = body.readUnsignedShort();
      ArrayNode values = JSON.createArrayNode();
      for (int i = 0; i < count; i++) {
        int length = body.readInt();
        if (length < 0) {
          values.addNull();
          continue;
        }
        boolean binary = (formats == 1 ? format[0] : formats > i ? format[i] : 0) == 1;
        if (binary) {
          byte[] bytes = new byte[length];
          body.readBytes(bytes);
          values.add("\\x" + HexFormat.of().formatHex(bytes));
        } else {
          values.add(body.readCharSequence(length, StandardCharsets.UTF_8).toString());
        }
      }
      return values.toString();
    } catch (IndexOutOfBoundsException e) {
      return "\"malformed\"";
    }
  }

  /** What an Execute runs. */
  Portal executed(ByteBuf frame) {
    String portal = Frames.readCString(Frames.body(frame));
    Portal bound = portals.get(portal);
    return bound != null ? bound : new Portal("<portal " + portal + ">", null);
  }

  // ---------------------------------------------------------------- records and the gate

  /**
   * The server completed {@code head}'s statement ({@code frame} is its CommandComplete or
   * ErrorResponse): journal the record; {@code durable} runs on the session's loop with null once
   * it is on disk, else with the failure.
   */
  void completed(
      Pending head, ByteBuf frame, Consumer<Runnable> onLoop, Consumer<Throwable> durable) {
    byte type = Frames.type(frame);
    Long rows = null;
    String sqlstate = null;
    if (type == 'C') {
      rows = AuditRecord.rowCount(Frames.readCString(Frames.body(frame)));
    } else {
      sqlstate = ErrorResponse.sqlState(frame);
    }
    TokenVerifier.Verified token = client.token();
    Instant now = Instant.now();
    AuditRecord record =
        new AuditRecord(
            0,
            now.getEpochSecond() * 1_000_000L + now.getNano() / 1_000,
            token == null ? client.user() : token.subject(),
            token == null ? null : token.jti(),
            client.loginRole(),
            token == null ? null : token.scopes(),
            client.host(),
            client.database().name(),
            head.sql,
            head.parameters,
            (System.nanoTime() - head.sentNanos) / 1e6,
            rows,
            sqlstate);
    journaling++;
    audit.record(record, error -> onLoop.accept(() -> durable.accept(error)));
  }

  /** A record became durable (or failed): true when nothing waits for the disk any more. */
  boolean settled() {
    journaling--;
    return journaling == 0;
  }

  /** Whether what goes to the client must wait for a record. */
  boolean holds() {
    return journaling > 0;
  }

  void hold(ByteBuf frame) {
    held.add(frame);
  }

  /** Hands what waited, in order, to {@code out}. */
  void release(Consumer<ByteBuf> out) {
    ByteBuf frame;
    while (journaling == 0 && (frame = held.poll()) != null) {
      out.accept(frame);
    }
  }

  /** The session ended: what waited is not sent. */
  void discard() {
    ByteBuf frame;
    while ((frame = held.poll()) != null) {
      frame.release();
    }
  }
}
