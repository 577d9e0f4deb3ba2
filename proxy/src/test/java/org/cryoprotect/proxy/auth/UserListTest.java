package org.cryoprotect.proxy.auth;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class UserListTest {
  @Test
  void loadsPgBouncerUserlist(@TempDir Path dir) throws IOException {
    Path file = dir.resolve("userlist.txt");
    Files.writeString(
        file,
        String.join(
            "\n",
            "; PgBouncer comment",
            "# another comment",
            "",
            "   ",
            "\"alice\" \"pencil\"",
            "\"bob\"\t\"md520c46e3762c864548e296b33c3406aa9\"",
            "  \"carol\" \"" + ScramServerTest.RFC_SECRET.format() + "\"",
            "\"dave \"\"the quote\"\"\" \"pa\"\"ss\"",
            "\"erin\" \"x\" trailing fields are ignored, as in PgBouncer",
            "\"alice\" \"newer\"",
            ""));

    UserList users = UserList.load(file);

    assertThat(users.size()).isEqualTo(5);
    assertThat(users.find("alice")).contains(new Secret.Plain("newer"));
    assertThat(users.find("bob")).containsInstanceOf(Secret.Md5.class);
    assertThat(users.find("carol")).contains(ScramServerTest.RFC_SECRET);
    assertThat(users.find("dave \"the quote\"")).contains(new Secret.Plain("pa\"ss"));
    assertThat(users.find("erin")).contains(new Secret.Plain("x"));
    assertThat(users.find("mallory")).isEmpty();
    assertThat(users.toString()).doesNotContain("pencil");
  }

  @Test
  void lookupIsAlreadyComplete() throws IOException {
    UserList users = UserList.parse("inline", List.of("\"alice\" \"pencil\""));
    assertThat(users.lookup("alice")).isCompletedWithValue(Optional.of(new Secret.Plain("pencil")));
    assertThat(users.lookup("bob")).isCompletedWithValue(Optional.empty());
  }

  @Test
  void acceptsEmptyPasswordAndByteOrderMark() throws IOException {
    UserList users = UserList.parse("inline", List.of("\uFEFF\"alice\" \"\""));
    assertThat(users.find("alice")).contains(new Secret.Plain(""));
  }

  @Test
  void malformedLineNamesFileAndLine(@TempDir Path dir) throws IOException {
    Path file = dir.resolve("userlist.txt");
    Files.writeString(file, "\"alice\" \"pencil\"\n; fine\n\"bob\" \"unterminated\n");

    assertThatThrownBy(() -> UserList.load(file))
        .isInstanceOf(IOException.class)
        .hasMessage(file + ":3: unterminated quoted password");
  }

  @Test
  void rejectsOtherMalformedLines() {
    assertMalformed("alice pencil", "inline:1: expected a double-quoted user name");
    assertMalformed("\"alice\"", "inline:1: expected a double-quoted password");
    assertMalformed("\"alice\" pencil", "inline:1: expected a double-quoted password");
    assertMalformed("\"alice", "inline:1: unterminated quoted user name");
    assertMalformed("\"\" \"pencil\"", "inline:1: empty user name");
  }

  @Test
  void errorsNeverEchoThePassword() {
    assertThatThrownBy(() -> UserList.parse("inline", List.of("\"alice\" \"hunter2")))
        .hasMessageNotContaining("hunter2");
  }

  @Test
  void rejectsInvalidUtf8(@TempDir Path dir) throws IOException {
    Path file = dir.resolve("userlist.txt");
    Files.write(file, new byte[] {'"', 'a', '"', ' ', '"', (byte) 0xff, '"'});
    assertThatThrownBy(() -> UserList.load(file))
        .isInstanceOf(IOException.class)
        .hasMessageContaining(file.toString());
  }

  private static void assertMalformed(String line, String message) {
    assertThatThrownBy(() -> UserList.parse("inline", List.of(line)))
        .isInstanceOf(IOException.class)
        .hasMessage(message);
  }
}
