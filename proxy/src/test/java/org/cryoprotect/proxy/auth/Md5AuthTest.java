package org.cryoprotect.proxy.auth;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;

class Md5AuthTest {
  // Independently computed: md5("penciluser") and md5(that hex || 01 02 03 04).
  private static final String HASH = "md520c46e3762c864548e296b33c3406aa9";
  private static final byte[] SALT = {1, 2, 3, 4};
  private static final String RESPONSE = "md54376eb6913b38f9aaff38dc7cf19ca76";

  @Test
  void hashIsMd5OfPasswordThenUser() {
    assertThat(Md5Auth.hash("pencil", "user")).isEqualTo(HASH);
  }

  @Test
  void responseSaltsTheStoredHash() {
    assertThat(Md5Auth.response(HASH, SALT)).isEqualTo(RESPONSE);
  }

  @Test
  void verifiesPlainAndMd5Secrets() {
    assertThat(Md5Auth.verify(new Secret.Plain("pencil"), "user", SALT, RESPONSE)).isTrue();
    assertThat(Md5Auth.verify(new Secret.Md5(HASH), "user", SALT, RESPONSE)).isTrue();
  }

  @Test
  void rejectsWrongAnswers() {
    assertThat(Md5Auth.verify(new Secret.Plain("pencil"), "other", SALT, RESPONSE)).isFalse();
    assertThat(Md5Auth.verify(new Secret.Plain("pen"), "user", SALT, RESPONSE)).isFalse();
    assertThat(Md5Auth.verify(new Secret.Md5(HASH), "user", new byte[] {1, 2, 3, 5}, RESPONSE))
        .isFalse();
    assertThat(Md5Auth.verify(new Secret.Md5(HASH), "user", SALT, RESPONSE + "0")).isFalse();
    assertThat(Md5Auth.verify(new Secret.Md5(HASH), "user", SALT, null)).isFalse();
  }

  @Test
  void scramSecretCannotAnswerMd5() {
    assertThat(Md5Auth.verify(ScramServerTest.RFC_SECRET, "user", SALT, RESPONSE)).isFalse();
  }

  @Test
  void responseRejectsBadInput() {
    assertThatThrownBy(() -> Md5Auth.response("pencil", SALT))
        .isInstanceOf(IllegalArgumentException.class);
    assertThatThrownBy(() -> Md5Auth.response(HASH, new byte[3]))
        .isInstanceOf(IllegalArgumentException.class);
  }
}
