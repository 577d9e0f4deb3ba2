package org.cryoprotect.proxy.sql;

import java.time.Duration;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;

/**
 * What the result cache must know of a SQL text, read from the text alone: whether every statement
 * has the shape of a read, the relations it reads (after FROM, JOIN, a comma of a FROM list, or
 * TABLE), the names it mentions at all (for writes), its hint, and the words that make a reply
 * depend on the moment ({@code current_timestamp}, {@code 'now'}).
 *
 * <p>Lexical on purpose, like {@link org.cryoprotect.proxy.sql.ReadClassifier}: it knows literals,
 * quoted identifiers, dollar quotes and comments, and does not parse. It errs towards "not
 * cacheable": a word it takes for a relation but is not one (a column after {@code EXTRACT(x FROM
 * col)}) is not covered by any rule, so the query is simply not cached. What it must never do is
 * miss a relation; every FROM-list item and every JOIN operand is read, also inside parentheses.
 */
public final class CacheSql {

  public enum Hint {
    NONE,
    /**
     * {@code /* cryoproxy:cache ttl=30s *}{@code /}: cache even if no rule covers the relations.
     */
    CACHE,
    /** {@code /* cryoproxy:nocache *}{@code /}: never. */
    NOCACHE
  }

  /** A relation as written; names folded as PostgreSQL folds them, schema null if unqualified. */
  public record Relation(String schema, String name) {
    @Override
    public String toString() {
      return schema == null ? name : schema + "." + name;
    }
  }

  /**
   * The verdict. {@code readShape}: every statement starts with SELECT, WITH, VALUES, TABLE or a
   * parenthesis. {@code denied}: why the text can never be cached whatever the catalog says, or
   * null. {@code mentioned}: every identifier chain in the text, reduced to its last two parts.
   * {@code opaque}: a statement starts with DO, CALL or EXECUTE, whose writes the text does not
   * name.
   */
  public record Analysis(
      boolean readShape,
      Hint hint,
      Duration hintTtl,
      List<Relation> relations,
      List<Relation> mentioned,
      boolean opaque,
      String denied) {}

  /** Keywords that read the clock or the session, which a function look-up cannot see. */
  private static final Set<String> MOMENT_WORDS =
      Set.of(
          "current_date",
          "current_time",
          "current_timestamp",
          "localtime",
          "localtimestamp",
          "current_user",
          "session_user",
          "current_role",
          "user",
          "current_schema",
          "system_user");

  /** String literals that a cast turns into the current moment. */
  private static final Set<String> MOMENT_LITERALS =
      Set.of("now", "today", "tomorrow", "yesterday");

  /** Words that end a FROM list at its own depth. */
  private static final Set<String> FROM_ENDS =
      Set.of(
          "where",
          "group",
          "having",
          "window",
          "order",
          "limit",
          "offset",
          "fetch",
          "union",
          "intersect",
          "except",
          "for",
          "returning",
          "into",
          "select");

  private static final Set<String> READ_STARTS = Set.of("select", "with", "values", "table");

  private CacheSql() {}

  // Token kinds.
  private static final int WORD = 0; // identifier or keyword; text folded unless quoted
  private static final int QUOTED = 1; // "identifier"
  private static final int STRING = 2; // a literal; text is its content
  private static final int PUNCT = 3; // one of ( ) [ ] , . ;
  private static final int OTHER = 4; // numbers, operators, parameters

  private record Token(int kind, String text) {
    boolean is(String word) {
      return kind == WORD && text.equals(word);
    }

    boolean punct(char c) {
      return kind == PUNCT && text.charAt(0) == c;
    }

    boolean name() {
      return kind == WORD || kind == QUOTED;
    }
  }

  /**
   * A cheap first look: whether the text starts (after blanks and comments) with SELECT, WITH,
   * VALUES, TABLE or a parenthesis. Writes and commands are turned away before anything costlier.
   */
  public static boolean looksLikeRead(String sql) {
    int i = skipBlanks(sql, 0);
    int n = sql.length();
    if (i < 0) {
      return false; // an unterminated comment
    }
    if (i < n && sql.charAt(i) == '(') {
      return true;
    }
    for (String word : READ_STARTS) {
      if (sql.regionMatches(true, i, word, 0, word.length())
          && (i + word.length() == n
              || !Character.isLetterOrDigit(sql.charAt(i + word.length()))
                  && sql.charAt(i + word.length()) != '_')) {
        return true;
      }
    }
    return false;
  }

  /**
   * The index of the first character at or after {@code i} that is not white space or in a comment;
   * -1 inside an unterminated block comment.
   */
  private static int skipBlanks(String sql, int i) {
    int n = sql.length();
    while (i < n) {
      char c = sql.charAt(i);
      if (Character.isWhitespace(c)) {
        i++;
      } else if (c == '-' && i + 1 < n && sql.charAt(i + 1) == '-') {
        int eol = sql.indexOf('\n', i);
        i = eol < 0 ? n : eol + 1;
      } else if (c == '/' && i + 1 < n && sql.charAt(i + 1) == '*') {
        i = ReadClassifier.blockCommentEnd(sql, i);
        if (i < 0) {
          return -1;
        }
      } else {
        return i;
      }
    }
    return i;
  }

  /**
   * A read that cannot write, seen without lexing: it looks like a read, does not start with WITH
   * (a CTE may write), and has no parenthesis (so no function call) and no semicolon (so no second
   * statement). {@code SELECT ... INTO} makes a new table, which nothing cached reads.
   */
  public static boolean plainRead(String sql) {
    return sql.indexOf('(') < 0
        && sql.indexOf(';') < 0
        && looksLikeRead(sql)
        && !sql.stripLeading().regionMatches(true, 0, "with", 0, 4);
  }

  public static Analysis analyze(String sql) {
    List<Token> tokens = new ArrayList<>();
    Hint[] hint = {Hint.NONE};
    Duration[] ttl = {null};
    boolean broken = tokenize(sql, tokens, hint, ttl);
    String denied = broken ? "unterminated literal or comment" : null;
    if (hint[0] == Hint.NOCACHE) {
      denied = "nocache hint";
    }
    boolean readShape = !broken;
    boolean statementStart = true;
    int depth = 0;
    BitSet fromAt = new BitSet();
    boolean expect = false; // the next name is a relation
    Set<String> ctes = new HashSet<>();
    List<Relation> relations = new ArrayList<>();
    List<Relation> mentioned = new ArrayList<>();
    boolean opaque = false;
    for (int i = 0; i < tokens.size(); i++) {
      Token t = tokens.get(i);
      if (t.kind == STRING && MOMENT_LITERALS.contains(t.text.trim().toLowerCase(Locale.ROOT))) {
        denied = denied == null ? "a literal that means the current moment" : denied;
      }
      if (t.kind == PUNCT) {
        char c = t.text.charAt(0);
        if (c == ';') {
          statementStart = true;
          expect = false;
          fromAt.clear();
          depth = 0;
          continue;
        }
        if (statementStart && c != '(') {
          readShape = false;
        }
        if (c == '(' || c == '[') {
          depth++;
          if (expect && i + 1 < tokens.size() && startsQuery(tokens.get(i + 1))) {
            expect = false; // a subquery: its own FROM is read as it comes
          }
        } else if (c == ')' || c == ']') {
          fromAt.clear(depth);
          depth = Math.max(0, depth - 1);
        } else if (c == ',' && fromAt.get(depth)) {
          expect = true;
        }
        continue;
      }
      if (statementStart) {
        statementStart = false;
        if (!(t.kind == WORD && READ_STARTS.contains(t.text))) {
          readShape = false;
        }
        opaque |= t.is("do") || t.is("call") || t.is("execute");
      }
      if (t.is("table")) {
        expect = true; // TABLE x, also after UNION
        continue;
      }
      if (t.kind == WORD && MOMENT_WORDS.contains(t.text)) {
        denied = denied == null ? t.text + " depends on the moment or the session" : denied;
      }
      if (!t.name()) {
        continue;
      }
      int end = chainEnd(tokens, i);
      Relation chain = chain(tokens, i, end);
      mentioned.add(chain);
      if (expect) {
        if (t.is("lateral") || t.is("only")) {
          continue;
        }
        expect = false;
        if (t.is("rows") || end + 1 < tokens.size() && tokens.get(end + 1).punct('(')) {
          i = end; // a function in FROM: the function look-up judges it
          continue;
        }
        relations.add(chain);
        i = end;
        continue;
      }
      if (t.is("from")) {
        boolean distinctFrom = i > 0 && tokens.get(i - 1).is("distinct");
        if (!distinctFrom) {
          fromAt.set(depth);
          expect = true;
        }
      } else if (t.is("join")) {
        expect = true;
      } else if (t.kind == WORD && FROM_ENDS.contains(t.text)) {
        fromAt.clear(depth);
      } else if (t.is("as") && i + 1 < tokens.size()) {
        noteCte(tokens, i, ctes);
      }
      i = end;
    }
    if (!ctes.isEmpty()) {
      relations.removeIf(r -> r.schema() == null && ctes.contains(r.name()));
    }
    return new Analysis(
        readShape, hint[0], ttl[0], List.copyOf(relations), List.copyOf(mentioned), opaque, denied);
  }

  private static boolean startsQuery(Token t) {
    return t.is("select") || t.is("with") || t.is("values") || t.is("table");
  }

  /** {@code name AS (}, {@code name AS [NOT] MATERIALIZED (}, {@code name(cols) AS (}. */
  private static void noteCte(List<Token> tokens, int as, Set<String> ctes) {
    int next = as + 1;
    if (tokens.get(next).is("not")) {
      next++;
    }
    if (next < tokens.size() && tokens.get(next).is("materialized")) {
      next++;
    }
    if (next >= tokens.size() || !tokens.get(next).punct('(') || as == 0) {
      return;
    }
    int before = as - 1;
    if (tokens.get(before).punct(')')) {
      int level = 0;
      for (; before >= 0; before--) {
        Token t = tokens.get(before);
        if (t.punct(')')) {
          level++;
        } else if (t.punct('(') && --level == 0) {
          break;
        }
      }
      before--;
    }
    if (before >= 0 && tokens.get(before).name()) {
      ctes.add(tokens.get(before).text);
    }
  }

  /** The index of the last token of the dotted chain that starts at {@code i}. */
  private static int chainEnd(List<Token> tokens, int i) {
    int end = i;
    while (end + 2 < tokens.size()
        && tokens.get(end + 1).punct('.')
        && tokens.get(end + 2).name()) {
      end += 2;
    }
    return end;
  }

  private static Relation chain(List<Token> tokens, int start, int end) {
    String name = tokens.get(end).text;
    String schema = end > start ? tokens.get(end - 2).text : null;
    return new Relation(schema, name);
  }

  /** Splits {@code sql} into tokens; true when a literal, identifier or comment is unterminated. */
  private static boolean tokenize(String sql, List<Token> out, Hint[] hint, Duration[] ttl) {
    int n = sql.length();
    int i = 0;
    while (i < n) {
      char c = sql.charAt(i);
      if (Character.isWhitespace(c)) {
        i++;
      } else if (c == '-' && i + 1 < n && sql.charAt(i + 1) == '-') {
        int eol = sql.indexOf('\n', i);
        i = eol < 0 ? n : eol + 1;
      } else if (c == '/' && i + 1 < n && sql.charAt(i + 1) == '*') {
        int end = ReadClassifier.blockCommentEnd(sql, i);
        if (end < 0) {
          return true;
        }
        readHint(sql.substring(i + 2, end - 2), hint, ttl);
        i = end;
      } else if (c == '\'') {
        boolean escapes =
            !out.isEmpty()
                && out.get(out.size() - 1).kind == WORD
                && out.get(out.size() - 1).text.equals("e")
                && i > 0
                && (sql.charAt(i - 1) == 'e' || sql.charAt(i - 1) == 'E');
        if (escapes) {
          out.remove(out.size() - 1);
        }
        int end = ReadClassifier.stringEnd(sql, i, escapes);
        if (end < 0) {
          return true;
        }
        out.add(new Token(STRING, sql.substring(i + 1, end - 1).replace("''", "'")));
        i = end;
      } else if (c == '"') {
        int end = sql.indexOf('"', i + 1);
        while (end >= 0 && end + 1 < n && sql.charAt(end + 1) == '"') {
          end = sql.indexOf('"', end + 2);
        }
        if (end < 0) {
          return true;
        }
        out.add(new Token(QUOTED, sql.substring(i + 1, end).replace("\"\"", "\"")));
        i = end + 1;
      } else if (c == '$' && i + 1 < n && !Character.isDigit(sql.charAt(i + 1))) {
        int tagEnd = sql.indexOf('$', i + 1);
        if (tagEnd < 0 || !isTag(sql, i + 1, tagEnd)) {
          out.add(new Token(OTHER, "$"));
          i++;
          continue;
        }
        String tag = sql.substring(i, tagEnd + 1);
        int close = sql.indexOf(tag, tagEnd + 1);
        if (close < 0) {
          return true;
        }
        out.add(new Token(STRING, sql.substring(tagEnd + 1, close)));
        i = close + tag.length();
      } else if (Character.isLetter(c) || c == '_' || c >= 0x80) {
        int end = i + 1;
        while (end < n) {
          char d = sql.charAt(end);
          if (!(Character.isLetterOrDigit(d) || d == '_' || d == '$' || d >= 0x80)) {
            break;
          }
          end++;
        }
        out.add(new Token(WORD, sql.substring(i, end).toLowerCase(Locale.ROOT)));
        i = end;
      } else if ("()[],.;".indexOf(c) >= 0) {
        out.add(new Token(PUNCT, String.valueOf(c)));
        i++;
      } else if (Character.isDigit(c)) {
        int end = i + 1;
        while (end < n && (Character.isLetterOrDigit(sql.charAt(end)) || sql.charAt(end) == '.')) {
          end++;
        }
        out.add(new Token(OTHER, sql.substring(i, end)));
        i = end;
      } else {
        out.add(new Token(OTHER, String.valueOf(c)));
        i++;
      }
    }
    return false;
  }

  private static boolean isTag(String sql, int from, int to) {
    for (int i = from; i < to; i++) {
      char c = sql.charAt(i);
      if (!(Character.isLetterOrDigit(c) || c == '_' || c >= 0x80)) {
        return false;
      }
    }
    return true;
  }

  private static void readHint(String body, Hint[] hint, Duration[] ttl) {
    String h = body.trim().toLowerCase(Locale.ROOT);
    if (h.equals("cryoproxy:nocache")) {
      hint[0] = Hint.NOCACHE;
    } else if (hint[0] != Hint.NOCACHE
        && (h.equals("cryoproxy:cache") || h.startsWith("cryoproxy:cache "))) {
      hint[0] = Hint.CACHE;
      for (String part : h.substring("cryoproxy:cache".length()).trim().split("\\s+")) {
        if (part.startsWith("ttl=")) {
          ttl[0] = parseTtl(part.substring(4));
        }
      }
    }
  }

  /** {@code 30s}, {@code 500ms}, {@code 5m}, {@code 1h}; a malformed value is ignored (no TTL). */
  static Duration parseTtl(String text) {
    try {
      if (text.endsWith("ms")) {
        return Duration.ofMillis(Long.parseLong(text.substring(0, text.length() - 2)));
      }
      long v = Long.parseLong(text.substring(0, text.length() - 1));
      return switch (text.charAt(text.length() - 1)) {
        case 's' -> Duration.ofSeconds(v);
        case 'm' -> Duration.ofMinutes(v);
        case 'h' -> Duration.ofHours(v);
        default -> null;
      };
    } catch (RuntimeException e) {
      return null;
    }
  }
}
