package org.cryoprotect.proxy.sql;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * Decides from the SQL text alone whether a transaction may start on a read replica: a text whose
 * every statement is a plain read ({@link Kind#READ}), or one that opens a transaction declared
 * {@code READ ONLY} ({@link Kind#READ_ONLY_BEGIN}). It also collects the names of the functions the
 * text calls, because a {@code SELECT} that calls a volatile function ({@code nextval}, {@code
 * pg_advisory_lock}) is not a read; the caller looks those up in {@code pg_proc}.
 *
 * <p>Lexical on purpose: it runs once per transaction on the event loop, so it is one pass by index
 * that allocates only the function names it returns. It knows exactly as much of PostgreSQL's lexer
 * ({@code scan.l}) as is needed to never mistake the inside of a literal, quoted identifier or
 * comment for a keyword; it does not parse. It assumes {@code standard_conforming_strings = on}
 * (the default since 9.1), as {@code '...'} is read with only {@code ''} as the escape.
 *
 * <p>It errs towards {@link Kind#OTHER}: any of {@code INSERT}, {@code UPDATE}, {@code DELETE},
 * {@code MERGE}, {@code INTO} or a locking clause anywhere, or any construct it does not know,
 * makes the text OTHER. A false OTHER only sends a read to the primary. A false READ cannot do harm
 * either: a replica refuses writes with SQLSTATE 25006 (read_only_sql_transaction), and the proxy
 * replays such a transaction on the primary.
 */
public final class ReadClassifier {

  public enum Kind {
    /**
     * Every statement is a read ({@code SELECT}, {@code VALUES}, {@code TABLE}, {@code WITH},
     * {@code SHOW}) with no locking clause and no write keyword.
     */
    READ,
    /** The first statement opens a transaction that is declared read only. */
    READ_ONLY_BEGIN,
    OTHER
  }

  /**
   * A routing hint the client wrote as a block comment whose body, trimmed, is {@code
   * cryoproxy:primary} or {@code cryoproxy:replica} (any case); PRIMARY wins when both appear.
   */
  public enum Hint {
    NONE,
    PRIMARY,
    REPLICA
  }

  /**
   * The verdict. {@code functions}: names called in the text (identifier directly followed by
   * {@code (} after optional whitespace/comments), unquoted names lower-cased, quoted names exact,
   * schema-qualified names reduced to the last part; no duplicates; empty list (shared constant)
   * when none.
   */
  public record Classification(Kind kind, Hint hint, List<String> functions) {
    public Classification {
      Objects.requireNonNull(kind, "kind");
      Objects.requireNonNull(hint, "hint");
      functions = List.copyOf(functions);
    }
  }

  /** PostgreSQL's NAMEDATALEN - 1: longer identifiers are truncated to this many bytes. */
  private static final int MAX_NAME_BYTES = 63;

  /**
   * Keywords that can stand right before {@code (} without calling anything ({@code x IN (1, 2)},
   * {@code OVER (...)}, {@code JOIN (...)}). Any other word before {@code (} is reported, also a
   * type modifier such as {@code varchar(10)}: names the caller does not find in {@code pg_proc}
   * are harmless, whereas a missed function could be volatile.
   */
  private static final String[] NOT_CALLS =
      ("all and any array as between by case cast check conflict default delete"
              + " distinct else except exists filter first for from group having ilike in insert"
              + " intersect into is join key lateral like limit next not of offset on only or"
              + " order over partition recursive references returning row select set sets similar"
              + " some table then to union unique update using values when where window with"
              + " within zone")
          .split(" ");

  /** Without functions there are only nine possible answers; they are shared, not allocated. */
  private static final Classification[] PLAIN = new Classification[9];

  static {
    for (Kind kind : Kind.values()) {
      for (Hint hint : Hint.values()) {
        PLAIN[kind.ordinal() * 3 + hint.ordinal()] = new Classification(kind, hint, List.of());
      }
    }
  }

  // What the statement being scanned is, from its first word or two.
  private static final int ST_EMPTY = 0;
  private static final int ST_READ = 1;
  private static final int ST_BEGIN = 2; // BEGIN or START TRANSACTION
  private static final int ST_START = 3; // START, waiting for TRANSACTION
  private static final int ST_SET = 4; // SET, waiting for TRANSACTION
  private static final int ST_SET_TRANSACTION = 5;
  private static final int ST_OTHER = 6;

  // The keyword(s) just seen that give the next word its meaning.
  private static final int AFTER_NOTHING = 0;
  private static final int AFTER_FOR = 1;
  private static final int AFTER_FOR_NO = 2;
  private static final int AFTER_FOR_KEY = 3; // FOR KEY or FOR NO KEY
  private static final int AFTER_READ = 4;

  private ReadClassifier() {}

  /** Classifies {@code sql}; never throws (a null text is OTHER, like an empty one). */
  public static Classification classify(String sql) {
    if (sql == null) {
      return PLAIN[Kind.OTHER.ordinal() * 3];
    }
    final int n = sql.length();
    Hint hint = Hint.NONE;
    List<String> functions = null;
    boolean broken = false; // an unterminated literal, quoted identifier or comment

    int statements = 0;
    boolean allReads = true;
    boolean firstOpensReadOnly = false;
    boolean firstOpensNotReadWrite = false;
    boolean secondSetsReadOnly = false;

    int type = ST_EMPTY;
    boolean writes = false; // a write keyword or a locking clause
    boolean readOnly = false;
    boolean readWrite = false;
    int after = AFTER_NOTHING;
    int identStart = -1; // the previous token, if it was an identifier: its name's bounds
    int identEnd = -1;
    boolean identQuoted = false;

    int i = 0;
    while (true) {
      char c = i < n ? sql.charAt(i) : ';'; // the end of the text ends the last statement
      if (c == ';') {
        if (type != ST_EMPTY) {
          statements++;
          allReads &= type == ST_READ && !writes;
          boolean setsReadOnly = readOnly && !readWrite;
          if (statements == 1) {
            firstOpensReadOnly = type == ST_BEGIN && setsReadOnly;
            firstOpensNotReadWrite = type == ST_BEGIN && !readWrite;
          } else if (statements == 2) {
            secondSetsReadOnly = type == ST_SET_TRANSACTION && setsReadOnly;
          }
        }
        if (i >= n) {
          break;
        }
        type = ST_EMPTY;
        writes = readOnly = readWrite = false;
        after = AFTER_NOTHING;
        identStart = -1;
        i++;
        continue;
      }
      char next = i + 1 < n ? sql.charAt(i + 1) : 0;
      if (c <= ' ') {
        i++;
        continue;
      }
      if (c == '-' && next == '-') {
        // scan.l ends a -- comment at \r too, so a bare \r must not hide the next line
        while (i < n && sql.charAt(i) != '\n' && sql.charAt(i) != '\r') {
          i++;
        }
        continue;
      }
      if (c == '/' && next == '*') {
        int end = blockCommentEnd(sql, i);
        if (end < 0) {
          broken = true;
          break;
        }
        Hint h = hintIn(sql, i + 2, end - 2);
        if (h != Hint.NONE && hint != Hint.PRIMARY) {
          hint = h;
        }
        i = end;
        continue;
      }

      // A token that counts. Words are the only ones that carry meaning here; '(' matters for
      // function calls and as the start of a parenthesised SELECT.
      int wordEnd = -1;
      boolean quotedIdent = false;
      int end;
      if (isIdentStart(c)) {
        end = i + 1;
        while (end < n && isIdentPart(sql.charAt(end))) {
          end++;
        }
        if (end == i + 1 && (c == 'e' || c == 'E') && end < n && sql.charAt(end) == '\'') {
          end = stringEnd(sql, end, true);
        } else {
          wordEnd = end;
        }
      } else if (c == '\'') {
        end = stringEnd(sql, i, false);
      } else if (c == '"') {
        end = quotedIdentEnd(sql, i);
        quotedIdent = end > i + 2; // "" is not a valid identifier
        if (!quotedIdent && end > 0) {
          end = -1;
        }
      } else if (c == '$') {
        end = dollarEnd(sql, i);
      } else if (c >= '0' && c <= '9') {
        end = i + 1;
        while (end < n && isNumberPart(sql.charAt(end))) {
          end++;
        }
      } else {
        end = i + 1;
      }
      if (end < 0) {
        broken = true;
        break;
      }

      if (type == ST_EMPTY) {
        type = c == '(' ? ST_READ : wordEnd < 0 ? ST_OTHER : statementType(sql, i, wordEnd);
      } else if (type == ST_START || type == ST_SET) {
        boolean transaction = wordEnd >= 0 && is(sql, i, wordEnd, "transaction");
        type = !transaction ? ST_OTHER : type == ST_START ? ST_BEGIN : ST_SET_TRANSACTION;
      }

      if (wordEnd >= 0) {
        if (is(sql, i, wordEnd, "insert")
            || is(sql, i, wordEnd, "update")
            || is(sql, i, wordEnd, "delete")
            || is(sql, i, wordEnd, "merge")
            || is(sql, i, wordEnd, "into")) {
          writes = true; // UPDATE also ends FOR UPDATE and FOR NO KEY UPDATE
        }
        int now = AFTER_NOTHING;
        switch (after) {
          case AFTER_FOR:
            if (is(sql, i, wordEnd, "share")) {
              writes = true;
            } else if (is(sql, i, wordEnd, "key")) {
              now = AFTER_FOR_KEY;
            } else if (is(sql, i, wordEnd, "no")) {
              now = AFTER_FOR_NO;
            }
            break;
          case AFTER_FOR_NO:
            if (is(sql, i, wordEnd, "key")) {
              now = AFTER_FOR_KEY;
            }
            break;
          case AFTER_FOR_KEY:
            writes |= is(sql, i, wordEnd, "share");
            break;
          case AFTER_READ:
            readOnly |= is(sql, i, wordEnd, "only");
            readWrite |= is(sql, i, wordEnd, "write");
            break;
          default:
            break;
        }
        if (now == AFTER_NOTHING) {
          if (is(sql, i, wordEnd, "for")) {
            now = AFTER_FOR;
          } else if (is(sql, i, wordEnd, "read")) {
            now = AFTER_READ;
          }
        }
        after = now;
        identStart = i;
        identEnd = wordEnd;
        identQuoted = false;
      } else {
        after = AFTER_NOTHING;
        if (c == '(' && identStart >= 0 && (identQuoted || !isNotCall(sql, identStart, identEnd))) {
          functions = addName(functions, sql, identStart, identEnd, identQuoted);
        }
        if (quotedIdent) {
          identStart = i + 1;
          identEnd = end - 1;
          identQuoted = true;
        } else {
          identStart = -1;
        }
      }
      i = end;
    }

    Kind kind;
    if (broken || statements == 0) {
      kind = Kind.OTHER;
    } else if (firstOpensReadOnly || (firstOpensNotReadWrite && secondSetsReadOnly)) {
      kind = Kind.READ_ONLY_BEGIN;
    } else if (allReads) {
      kind = Kind.READ;
    } else {
      kind = Kind.OTHER;
    }
    return functions == null
        ? PLAIN[kind.ordinal() * 3 + hint.ordinal()]
        : new Classification(kind, hint, functions);
  }

  /** The statement type its first word gives. */
  private static int statementType(String sql, int start, int end) {
    if (is(sql, start, end, "select")
        || is(sql, start, end, "with")
        || is(sql, start, end, "values")
        || is(sql, start, end, "table")
        || is(sql, start, end, "show")) {
      return ST_READ;
    }
    if (is(sql, start, end, "begin")) {
      return ST_BEGIN;
    }
    if (is(sql, start, end, "start")) {
      return ST_START;
    }
    return is(sql, start, end, "set") ? ST_SET : ST_OTHER;
  }

  /**
   * Whether {@code sql[start, end)} is {@code lowerKeyword}. Only ASCII letters are folded, as
   * PostgreSQL does for keywords; {@code regionMatches(true, ...)} would also take the Kelvin sign
   * for a {@code k}.
   */
  private static boolean is(String sql, int start, int end, String lowerKeyword) {
    int length = lowerKeyword.length();
    if (end - start != length) {
      return false;
    }
    for (int k = 0; k < length; k++) {
      char c = sql.charAt(start + k);
      if (c >= 'A' && c <= 'Z') {
        c += 'a' - 'A';
      }
      if (c != lowerKeyword.charAt(k)) {
        return false;
      }
    }
    return true;
  }

  private static boolean isNotCall(String sql, int start, int end) {
    for (String keyword : NOT_CALLS) {
      if (is(sql, start, end, keyword)) {
        return true;
      }
    }
    return false;
  }

  /** scan.l's ident_start: any non-ASCII character counts, as every byte >= 0x80 does there. */
  private static boolean isIdentStart(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
  }

  private static boolean isIdentPart(char c) {
    return isIdentStart(c) || (c >= '0' && c <= '9') || c == '$';
  }

  /**
   * Digits, '.', and '_' (PostgreSQL 16 separators). Letters are left out so that {@code 1into}
   * still shows {@code into}, as older servers read it.
   */
  private static boolean isNumberPart(char c) {
    return (c >= '0' && c <= '9') || c == '.' || c == '_';
  }

  /** The index after the comment opened at {@code start}, which may nest; -1 if unterminated. */
  public static int blockCommentEnd(String sql, int start) {
    int n = sql.length();
    int depth = 0;
    int i = start;
    while (i + 1 < n) {
      char c = sql.charAt(i);
      char next = sql.charAt(i + 1);
      if (c == '/' && next == '*') {
        depth++;
        i += 2;
      } else if (c == '*' && next == '/') {
        i += 2;
        if (--depth == 0) {
          return i;
        }
      } else {
        i++;
      }
    }
    return -1;
  }

  /** The hint a comment with body {@code sql[start, end)} gives, if any. */
  private static Hint hintIn(String sql, int start, int end) {
    while (start < end && sql.charAt(start) <= ' ') {
      start++;
    }
    while (end > start && sql.charAt(end - 1) <= ' ') {
      end--;
    }
    if (is(sql, start, end, "cryoproxy:primary")) {
      return Hint.PRIMARY;
    }
    return is(sql, start, end, "cryoproxy:replica") ? Hint.REPLICA : Hint.NONE;
  }

  /**
   * The index after the literal whose opening quote is at {@code quote}; -1 if unterminated. In an
   * {@code E'...'} literal a backslash escapes the next character, so {@code E'it\'s'} is one.
   */
  public static int stringEnd(String sql, int quote, boolean backslashEscapes) {
    int n = sql.length();
    int i = quote + 1;
    while (i < n) {
      char c = sql.charAt(i);
      if (c == '\\' && backslashEscapes) {
        i += 2;
      } else if (c == '\'') {
        if (i + 1 < n && sql.charAt(i + 1) == '\'') {
          i += 2;
        } else {
          return i + 1;
        }
      } else {
        i++;
      }
    }
    return -1;
  }

  /** The index after the quoted identifier opened at {@code quote}; -1 if unterminated. */
  private static int quotedIdentEnd(String sql, int quote) {
    int n = sql.length();
    int i = quote + 1;
    while (i < n) {
      if (sql.charAt(i) == '"') {
        if (i + 1 < n && sql.charAt(i + 1) == '"') {
          i += 2;
        } else {
          return i + 1;
        }
      } else {
        i++;
      }
    }
    return -1;
  }

  /**
   * The index after the token that starts with the {@code $} at {@code start}: a dollar-quoted
   * literal ({@code $$...$$}, {@code $tag$...$tag$}), a parameter ({@code $1}) or a lone {@code $};
   * -1 if a dollar-quoted literal is unterminated.
   */
  private static int dollarEnd(String sql, int start) {
    int n = sql.length();
    int i = start + 1;
    if (i < n && sql.charAt(i) >= '0' && sql.charAt(i) <= '9') {
      while (i < n && sql.charAt(i) >= '0' && sql.charAt(i) <= '9') {
        i++;
      }
      return i;
    }
    if (i < n && isIdentStart(sql.charAt(i))) {
      while (i < n && isIdentPart(sql.charAt(i)) && sql.charAt(i) != '$') {
        i++;
      }
    }
    if (i >= n || sql.charAt(i) != '$') {
      return start + 1; // not a dollar quote; the server will complain, not us
    }
    int tagLength = i + 1 - start;
    for (int j = i + 1; j + tagLength <= n; j++) {
      if (sql.charAt(j) == '$' && sql.regionMatches(j, sql, start, tagLength)) {
        return j + tagLength;
      }
    }
    return -1;
  }

  private static List<String> addName(
      List<String> names, String sql, int start, int end, boolean quoted) {
    int nameEnd = nameEnd(sql, start, end, quoted);
    if (names == null) {
      names = new ArrayList<>(4);
    } else {
      for (String name : names) {
        if (sameName(name, sql, start, nameEnd, quoted)) {
          return names;
        }
      }
    }
    boolean asWritten = true;
    for (int i = start; i < nameEnd && asWritten; i++) {
      asWritten = nameChar(sql, i, quoted) == sql.charAt(i) && !(quoted && sql.charAt(i) == '"');
    }
    if (asWritten) {
      names.add(sql.substring(start, nameEnd));
      return names;
    }
    StringBuilder name = new StringBuilder(nameEnd - start);
    for (int i = start; i < nameEnd; i++) {
      name.append(nameChar(sql, i, quoted));
      if (quoted && sql.charAt(i) == '"') {
        i++;
      }
    }
    names.add(name.toString());
    return names;
  }

  /**
   * The character of the name at {@code i}: unquoted names fold ASCII only, as PostgreSQL's {@code
   * downcase_identifier} does in UTF-8. In a quoted name {@code ""} is one {@code "}.
   */
  private static char nameChar(String sql, int i, boolean quoted) {
    char c = sql.charAt(i);
    return !quoted && c >= 'A' && c <= 'Z' ? (char) (c + ('a' - 'A')) : c;
  }

  /**
   * Where the name in {@code sql[start, end)} stops after PostgreSQL truncates it to 63 UTF-8 bytes
   * (whole characters only), so that the caller looks up the function the server would call.
   */
  private static int nameEnd(String sql, int start, int end, boolean quoted) {
    int bytes = 0;
    int i = start;
    while (i < end) {
      char c = sql.charAt(i);
      int chars = 1;
      int width;
      if (c < 0x80) {
        width = 1;
        if (quoted && c == '"') {
          chars = 2;
        }
      } else if (c < 0x800) {
        width = 2;
      } else if (Character.isHighSurrogate(c)
          && i + 1 < end
          && Character.isLowSurrogate(sql.charAt(i + 1))) {
        width = 4;
        chars = 2;
      } else {
        width = 3;
      }
      if (bytes + width > MAX_NAME_BYTES) {
        break;
      }
      bytes += width;
      i += chars;
    }
    return i;
  }

  private static boolean sameName(String name, String sql, int start, int end, boolean quoted) {
    int k = 0;
    for (int i = start; i < end; i++, k++) {
      if (k >= name.length() || name.charAt(k) != nameChar(sql, i, quoted)) {
        return false;
      }
      if (quoted && sql.charAt(i) == '"') {
        i++;
      }
    }
    return k == name.length();
  }
}
