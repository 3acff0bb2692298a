package translate

// Same is same, for the tests of package translate_test.
var Same = same
