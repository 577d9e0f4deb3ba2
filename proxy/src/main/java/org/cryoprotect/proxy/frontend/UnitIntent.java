package org.cryoprotect.proxy.frontend;

import io.netty.buffer.ByteBuf;
import java.util.Map;
import org.cryoprotect.proxy.pool.PreparedRegistry;
import org.cryoprotect.proxy.protocol.Frames;
import org.cryoprotect.proxy.protocol.frontend.Bind;
import org.cryoprotect.proxy.protocol.frontend.Parse;
import org.cryoprotect.proxy.protocol.frontend.Query;
import org.cryoprotect.proxy.routing.FunctionVolatility;
import org.cryoprotect.proxy.sql.ReadClassifier;
import org.cryoprotect.proxy.sql.ReadClassifier.Classification;
import org.cryoprotect.proxy.sql.ReadClassifier.Hint;
import org.cryoprotect.proxy.sql.ReadClassifier.Kind;

/**
 * Where the first unit of a transaction (the client's messages up to its first Sync or Query) may
 * run (DESIGN §5). Only what the proxy can prove is a read leaves the primary: a unit that is not
 * complete yet, that calls a function of unknown or volatile volatility, or that contains anything
 * but reads, is a write.
 */
enum UnitIntent {
  /** Everything else: the primary. */
  WRITE,
  /** An implicit transaction of reads only: a replica, replayable anywhere. */
  READ,
  /** BEGIN READ ONLY and what follows, to the transaction's end: a replica. */
  READ_ONLY_TRANSACTION;

  static UnitIntent of(
      Iterable<ByteBuf> unit,
      Map<String, PreparedRegistry.Entry> byName,
      boolean renamed,
      FunctionVolatility volatility) {
    UnitIntent result = null;
    for (ByteBuf frame : unit) {
      Classification c;
      switch (Frames.type(frame)) {
        case 'Q' -> {
          String sql = Query.textOrNull(frame);
          return sql == null ? WRITE : combine(result, ReadClassifier.classify(sql), volatility);
        }
        case 'P' -> c = ReadClassifier.classify(Parse.decode(Frames.body(frame)).query());
        case 'B' -> {
          String name = renamed ? Bind.statement(frame) : "";
          PreparedRegistry.Entry entry = name.isEmpty() ? null : byName.get(name);
          if (entry == null) {
            continue; // the unnamed statement: its Parse was judged
          }
          c = entry.classification();
        }
        case 'S' -> {
          return result == null ? WRITE : result;
        }
        case 'D', 'E', 'C', 'H' -> {
          continue;
        }
        default -> {
          return WRITE; // function calls, COPY data, anything unusual
        }
      }
      result = combine(result, c, volatility);
      if (result == WRITE || result == READ_ONLY_TRANSACTION) {
        return result;
      }
    }
    return WRITE; // no Sync yet: the unit is not complete
  }

  /** How much of an unfinished extended-protocol batch is held to judge it as a whole. */
  static final int JUDGE_BYTES = 64 * 1024;

  /**
   * Whether enough of the unit is here to judge where it may run: a message that makes the server
   * answer (Sync, Query, Flush, a function call) or anything unusual. A batch split across reads
   * waits for its rest, which the server would not answer before either; past {@link #JUDGE_BYTES}
   * it goes to the writer as it is.
   */
  static boolean readable(Iterable<ByteBuf> unit) {
    int bytes = 0;
    for (ByteBuf frame : unit) {
      switch (Frames.type(frame)) {
        case 'P', 'B', 'D', 'E', 'C' -> bytes += frame.readableBytes();
        default -> {
          return true;
        }
      }
    }
    return bytes > JUDGE_BYTES;
  }

  private static UnitIntent combine(
      UnitIntent before, Classification c, FunctionVolatility volatility) {
    if (c.hint() == Hint.PRIMARY) {
      return WRITE;
    }
    if (before == null && c.kind() == Kind.READ_ONLY_BEGIN) {
      return READ_ONLY_TRANSACTION;
    }
    if (c.hint() == Hint.REPLICA) {
      return READ;
    }
    if (c.kind() != Kind.READ
        || volatility.check(c.functions()) != FunctionVolatility.Verdict.SAFE) {
      return WRITE;
    }
    return READ;
  }
}
